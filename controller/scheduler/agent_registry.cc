#include "controller/scheduler/agent_registry.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace benchfleet {

AgentRecord AgentRecordFor(const AgentHello& hello, AgentState state,
                           absl::Time last_seen) {
  AgentRecord rec;
  rec.id = hello.agent_id;
  rec.hostname = hello.facts.hostname;
  rec.labels = hello.labels;
  rec.facts_json = nlohmann::json{{"cpu_model", hello.facts.cpu_model},
                                  {"cpu_cores", hello.facts.cpu_cores},
                                  {"memory_bytes", hello.facts.memory_bytes},
                                  {"os", hello.facts.os},
                                  {"kernel", hello.facts.kernel}}
                       .dump();
  rec.state = state;
  rec.last_seen = last_seen;
  return rec;
}

AgentRegistry::AgentRegistry(
    Store* store, Clock* clock, StoreWriteFn store_write,
    std::function<void(const std::string& key)> drop_write)
    : store_(store),
      clock_(clock),
      store_write_(std::move(store_write)),
      drop_write_(std::move(drop_write)) {}

AgentSession& AgentRegistry::Connect(std::shared_ptr<AgentLink> link,
                                     AgentHello hello) {
  const std::string id = hello.agent_id;
  auto old = sessions_.find(id);
  if (old != sessions_.end() && old->second.link != link) {
    old->second.link->Close(
        "a newer connection from the same agent replaced this one");
  }
  AgentSession& s = sessions_[id];
  s.link = std::move(link);
  s.hello = std::move(hello);
  s.last_seen = clock_->Now();
  s.attempt_id = 0;
  s.refuses_orders.clear();
  return s;
}

void AgentRegistry::Register(const std::string& agent_id, AgentState state,
                             int64_t experiment_id) {
  AgentSession* s = Find(agent_id);
  if (s == nullptr) return;
  AgentRecord rec = AgentRecordFor(s->hello, state, s->last_seen);
  // Registered before the Welcome acknowledges it (DESIGN.md §6).
  // A kept state write is older than this record.
  drop_write_(absl::StrCat("agent:", agent_id, "/state"));
  store_write_(absl::StrCat("agent:", agent_id),
               absl::StrCat("record agent ", agent_id),
               [this, rec] { return store_->UpsertAgent(rec); });
  SetCurrentExperiment(agent_id, experiment_id);
}

AgentSession* AgentRegistry::Find(const std::shared_ptr<AgentLink>& link) {
  for (auto& [id, s] : sessions_)
    if (s.link == link) return &s;
  return nullptr;
}

AgentSession* AgentRegistry::Find(const std::string& agent_id) {
  auto it = sessions_.find(agent_id);
  return it == sessions_.end() ? nullptr : &it->second;
}

std::optional<AgentSession> AgentRegistry::Disconnect(
    const std::shared_ptr<AgentLink>& link) {
  for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
    if (it->second.link != link) continue;
    AgentSession gone = std::move(it->second);
    const std::string id = it->first;
    sessions_.erase(it);
    SetState(id, AgentState::kOffline);
    {
      absl::MutexLock lock(&mu_);
      connected_.erase(id);
    }
    spdlog::info("agent {} disconnected", id);
    return gone;
  }
  return std::nullopt;
}

std::vector<AgentSession> AgentRegistry::DropSilent(
    absl::Time now, absl::Duration lease_timeout) {
  std::vector<std::shared_ptr<AgentLink>> silent;
  for (auto& [id, s] : sessions_) {
    if (now - s.last_seen > lease_timeout) silent.push_back(s.link);
  }
  std::vector<AgentSession> dropped;
  for (auto& link : silent) {
    link->Close("no heartbeat within the lease timeout");
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
      if (it->second.link != link) continue;
      {
        absl::MutexLock lock(&mu_);
        connected_.erase(it->first);
      }
      dropped.push_back(std::move(it->second));
      sessions_.erase(it);
      break;
    }
  }
  return dropped;
}

void AgentRegistry::Busy(AgentSession& session, int64_t attempt_id,
                         int64_t experiment_id) {
  session.attempt_id = attempt_id;
  SetState(session.hello.agent_id, AgentState::kBusy);
  SetCurrentExperiment(session.hello.agent_id, experiment_id);
}

void AgentRegistry::Idle(AgentSession& session) {
  session.attempt_id = 0;
  SetState(session.hello.agent_id, AgentState::kIdle);
  SetCurrentExperiment(session.hello.agent_id, 0);
}

void AgentRegistry::SetState(const std::string& agent_id, AgentState state) {
  const absl::Time now = clock_->Now();
  // Sorts after "agent:ID", so a kept record is retried before its state.
  store_write_(absl::StrCat("agent:", agent_id, "/state"),
               absl::StrCat("record the state of agent ", agent_id),
               [this, agent_id, state, now] {
                 return store_->SetAgentState(agent_id, state, now);
               });
}

void AgentRegistry::ForEachAvailable(
    const std::function<void(AgentSession&)>& fn) {
  for (auto& [id, s] : sessions_) {
    if (s.attempt_id != 0 || !s.refuses_orders.empty()) continue;
    absl::StatusOr<AgentRecord> rec = store_->GetAgent(id);
    if (rec.ok() && rec->cordoned) continue;
    fn(s);
  }
}

void AgentRegistry::SetCurrentExperiment(const std::string& agent_id,
                                         int64_t experiment_id) {
  absl::MutexLock lock(&mu_);
  connected_[agent_id] = experiment_id;
}

bool AgentRegistry::IsConnected(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  return connected_.contains(agent_id);
}

int64_t AgentRegistry::CurrentExperimentOf(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  auto it = connected_.find(agent_id);
  return it == connected_.end() ? 0 : it->second;
}

}  // namespace benchfleet
