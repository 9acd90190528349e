// AgentRegistry: the Dispatcher's connected agents. For each agent it keeps
// its stream (AgentLink), its hello (labels, host facts), when it was last
// heard from, the attempt it holds, what it reports doing besides running
// steps, and whether it refuses this controller's orders; and it keeps the
// agent's record in the store (registered on connect, idle / busy / offline,
// the operator's cordon, which takes it out of the work offered).
//
// The store writes go through the owner's StoreWrites (retried while the
// store is down), by the same keys the Dispatcher has always used:
// "agent:ID" for the registration and "agent:ID/state" for the state.
//
// Not thread-safe; externally synchronized (the Dispatcher's Tick) — except
// IsConnected and CurrentExperimentOf, which any thread may call.
#ifndef BENCHFLEET_CONTROLLER_SCHEDULER_AGENT_REGISTRY_H_
#define BENCHFLEET_CONTROLLER_SCHEDULER_AGENT_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/model/agent.h"
#include "common/model/host_facts.h"
#include "common/model/variant_source.h"
#include "common/spec.h"
#include "controller/attempt/attempt_driver.h"
#include "controller/scheduler/store_writes.h"
#include "controller/store/store.h"

namespace benchfleet {

// The controller's side of one agent's stream. Implementations queue the
// message and return at once; they never block and may be called from the
// dispatcher's loop thread only.
class AgentLink {
 public:
  virtual ~AgentLink() = default;
  virtual void SendWelcome(absl::Duration heartbeat_interval,
                           absl::Duration lease_timeout) = 0;
  // `gates` are the spec's host gates, which the agent enforces; `workdir` is
  // the experiment's work directory on the agent's host (whose commit and
  // toolchain the agent records). `sources` (with source.repo; else empty):
  // the commit of each variant, which the agent checks out and runs that
  // variant's steps in.
  virtual void SendLease(int64_t attempt_id, const std::string& lease_token,
                         int64_t experiment_id,
                         const std::string& experiment_name,
                         const GateSpec& gates, const std::string& workdir,
                         const std::vector<VariantSourceRecord>& sources) = 0;
  virtual void SendStep(int64_t attempt_id, const std::string& lease_token,
                        const PlannedStep& step) = 0;
  // Steps sent earlier that the agent must drop (or stop) without a result.
  virtual void SendRevoke(int64_t attempt_id, const std::string& lease_token,
                          const std::vector<int64_t>& step_seqs,
                          const std::string& reason) = 0;
  virtual void SendAck(int64_t attempt_id, int64_t step_seq, bool accepted,
                       const std::string& reason) = 0;
  virtual void SendRelease(int64_t attempt_id, const std::string& lease_token,
                           const std::string& reason) = 0;
  // Ends the stream (the agent will reconnect).
  virtual void Close(const std::string& reason) = 0;
};

struct AgentHello {
  std::string agent_id;
  std::map<std::string, std::string> labels;
  HostFacts facts;
  std::string version;
  int64_t current_attempt_id = 0;
  std::string current_lease_token;
};

// One connected agent.
struct AgentSession {
  std::shared_ptr<AgentLink> link;
  AgentHello hello;
  absl::Time last_seen;
  int64_t attempt_id = 0;  // 0 = idle
  std::string status;      // what it does besides steps ("waiting for gates")
  // Why no work is offered on this stream: the agent refused an order's
  // signature. Cleared when it connects again.
  std::string refuses_orders;
};

// A store write nothing waits on, kept and retried under `key` (StoreWrites).
using StoreWriteFn = std::function<void(
    const std::string& key, const std::string& what, StoreWrites::Write)>;

class AgentRegistry {
 public:
  // `store` and `clock` must outlive the registry. `store_write` runs the
  // state and registration writes; `drop_write` forgets a kept one.
  AgentRegistry(Store* store, Clock* clock, StoreWriteFn store_write,
                std::function<void(const std::string& key)> drop_write);

  // A new stream for `hello.agent_id`: replaces (and closes) the agent's
  // previous stream, if another, and starts its session afresh (idle, heard
  // from now). Nothing is written until Register.
  AgentSession& Connect(std::shared_ptr<AgentLink> link, AgentHello hello);
  // Records the connected agent in the store with `state` (a kept state write
  // is older than this record and is dropped), and that it runs
  // `experiment_id` (0: none) for readers.
  void Register(const std::string& agent_id, AgentState state,
                int64_t experiment_id);
  // The session on `link` / of `agent_id`, or nullptr.
  AgentSession* Find(const std::shared_ptr<AgentLink>& link);
  AgentSession* Find(const std::string& agent_id);
  // The stream on `link` ended: the session is removed and the agent marked
  // offline. Returns the removed session, or nullopt when `link` is unknown.
  std::optional<AgentSession> Disconnect(
      const std::shared_ptr<AgentLink>& link);
  // Closes and removes the sessions not heard from for more than
  // `lease_timeout` before `now`; returns them.
  std::vector<AgentSession> DropSilent(absl::Time now,
                                       absl::Duration lease_timeout);

  // `session` now holds `attempt_id` of `experiment_id`: marked busy.
  void Busy(AgentSession& session, int64_t attempt_id, int64_t experiment_id);
  // `session` holds no attempt any more: marked idle.
  void Idle(AgentSession& session);
  // Writes the agent's state (its last_seen is now, as the store records it).
  void SetState(const std::string& agent_id, AgentState state);
  // Calls `fn` for each session that may take work now, in agent id order:
  // holding no attempt, not refusing orders and not cordoned in the store.
  void ForEachAvailable(const std::function<void(AgentSession&)>& fn);

  // Thread-safe.
  bool IsConnected(const std::string& agent_id);
  // The experiment the agent runs, 0 when idle or not connected.
  int64_t CurrentExperimentOf(const std::string& agent_id);

 private:
  void SetCurrentExperiment(const std::string& agent_id, int64_t experiment_id);

  Store* store_;
  Clock* clock_;
  StoreWriteFn store_write_;
  std::function<void(const std::string&)> drop_write_;
  std::map<std::string, AgentSession> sessions_;

  absl::Mutex mu_;
  // Published for readers on other threads: agent -> experiment (0 = idle).
  std::map<std::string, int64_t> connected_ ABSL_GUARDED_BY(mu_);
};

// The store's record of an agent that sent `hello` and was heard from at
// `last_seen` (its host facts as JSON).
AgentRecord AgentRecordFor(const AgentHello& hello, AgentState state,
                           absl::Time last_seen);

}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_SCHEDULER_AGENT_REGISTRY_H_
