// LeaseState: the agent's bookkeeping of its one lease, with no threads, no
// I/O and no clock of its own (every time it needs is passed in, read by the
// caller from the injected Clock). It knows which lease is held, the step
// orders pending, the one running, those done and the results the controller
// has not acknowledged yet, the revokes, the environment recorded for the
// lease, and the connection state behind the rule "cut off from the
// controller for longer than the lease timeout: kill the own job and drop the
// lease" (DESIGN.md §6).
//
// Used by Agent (agent/service/agent.cc), which turns its decisions into
// messages, cancellations and files. Not thread-safe; externally synchronized
// (the agent holds its mutex around every call).
#ifndef BENCHFLEET_AGENT_SERVICE_LEASE_STATE_H_
#define BENCHFLEET_AGENT_SERVICE_LEASE_STATE_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "benchfleet/v1/agent.pb.h"

namespace benchfleet {

class LeaseState {
 public:
  using Key = std::pair<int64_t, int64_t>;  // (attempt_id, step_seq)

  // Starts without a lease, disconnected since `now`.
  LeaseState(absl::Duration lease_timeout, absl::Time now);

  // --- The connection and the cut-off rule.
  void SetLeaseTimeout(absl::Duration timeout) { lease_timeout_ = timeout; }
  absl::Duration lease_timeout() const { return lease_timeout_; }
  // The controller welcomed this agent on a new stream.
  void Connected() { connected_ = true; }
  // The stream ended at `now`. The cut-off is counted from the first loss
  // after a connection (a failed reconnect does not restart it).
  void Disconnected(absl::Time now);
  bool connected() const { return connected_; }
  // True when a lease is held and the controller has been out of reach for
  // longer than the lease timeout at `now`: the caller drops the lease
  // (DropLease), which stops its running step. A pure function of `now`, so it
  // may be (and is) checked on every tick, connected or not.
  bool CutOffTooLong(absl::Time now) const;

  // --- The lease.
  int64_t attempt_id() const { return attempt_; }  // 0 = none
  const std::string& lease_token() const { return token_; }
  const v1::GateSpec& gates() const { return gates_; }

  // What to do with a Lease message.
  struct LeaseDecision {
    enum Kind {
      kReject,             // answer accepted=false with `reason`
      kAcceptWithEnv,      // answer accepted=true with `environment` (repeat)
      kAwaitEnvironment,   // no answer now: the worker answers when recorded
      kRecordEnvironment,  // no answer now: the worker records, then answers
    };
    Kind kind = kReject;
    std::string reason;
    v1::AttemptEnvironment environment;
  };
  LeaseDecision OnLease(const v1::Lease& lease);

  // What became of the lease that was dropped.
  struct Dropped {
    int64_t attempt_id = 0;
    bool stop_running = false;    // the running step belongs to it
    bool stop_recording = false;  // its environment is being recorded
  };
  // Forgets the lease (orders, results, environment) at `now`, which starts the
  // cooldown before the next attempt.
  Dropped DropLease(absl::Time now);
  // The time the last lease was dropped (InfinitePast: never).
  absl::Time last_attempt_end() const { return last_attempt_end_; }

  // --- Step orders.
  enum class StepDecision {
    kNotLeased,  // not under this agent's lease: ignored
    kResend,     // done but unacknowledged: `*resend` is the result to resend
    kKnown,      // done and acknowledged, running or pending: nothing to do
    kQueued,     // queued for the worker
  };
  StepDecision OnStep(const v1::StepOrder& order, v1::StepResult* resend);
  // Drops the revoked pending orders; true when the running step is revoked
  // (the caller stops it; no result is sent for it).
  bool OnRevoke(const v1::Revoke& revoke);
  void OnAck(int64_t attempt_id, int64_t step_seq) {
    unacked_.erase({attempt_id, step_seq});
  }
  // The results to resend after a reconnect, in (attempt, step) order.
  std::vector<v1::StepResult> Unacked() const;

  // --- The worker.
  // True when the worker has something to do (a lease to accept, a step).
  bool HasWork() const {
    return lease_to_accept_.has_value() || !pending_.empty();
  }
  // The next piece of work: a lease to record the environment for (first), or
  // the next step, which becomes the running one. Requires HasWork().
  struct Work {
    std::optional<v1::Lease> lease;
    v1::StepOrder step;
  };
  Work TakeWork();
  // The environment for `lease` was recorded: true when the acceptance is to be
  // sent (false when the lease was dropped or replaced meanwhile).
  bool EnvironmentRecorded(const v1::Lease& lease,
                           const v1::AttemptEnvironment& environment);
  bool busy() const { return running_.first != 0; }
  // Whether the step about to run is the attempt's first (its gates include
  // the attempt-level ones); marks the lease started.
  bool StartAttemptIfFirst();
  // The running step ended with `result`: true when the result is to be sent
  // (it is kept until acknowledged); false when its lease was dropped or the
  // step revoked meanwhile. A "host not ready" result drops the attempt's other
  // pending orders.
  bool StepFinished(const v1::StepOrder& order, const v1::StepResult& result);

  // For tests and heartbeats.
  size_t pending_count() const { return pending_.size(); }
  Key running() const { return running_; }

 private:
  absl::Duration lease_timeout_;
  bool connected_ = false;
  absl::Time disconnected_since_;

  int64_t attempt_ = 0;
  std::string token_;
  v1::GateSpec gates_;
  bool started_ = false;  // the lease's attempt-level gates were passed once
  absl::Time last_attempt_end_ = absl::InfinitePast();
  std::deque<v1::StepOrder> pending_;
  Key running_ = {0, 0};
  bool running_revoked_ = false;
  std::set<Key> done_;
  std::map<Key, v1::StepResult> unacked_;
  std::optional<v1::Lease> lease_to_accept_;
  int64_t recording_env_for_ = 0;  // attempt id, 0 = none
  std::optional<v1::AttemptEnvironment> lease_env_;
};

}  // namespace benchfleet

#endif  // BENCHFLEET_AGENT_SERVICE_LEASE_STATE_H_
