// Dispatcher (dispatcher.h): construction, the loop thread and Tick, agent
// sessions (connects, heartbeats, disconnects, silence), samples, cancel, and
// the views published to watchers. The attempt lifecycle is in
// dispatcher_attempts.cc.
#include "controller/scheduler/dispatcher.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "controller/scheduler/environment_record.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace benchfleet {

absl::StatusOr<std::unique_ptr<Dispatcher>> Dispatcher::Create(
    Store* store, Clock* clock, DispatcherOptions options, SpecSource specs) {
  if (specs == nullptr) {
    return absl::InvalidArgumentError(
        "the dispatcher needs a spec source (Dispatcher::Create)");
  }
  // Attempts a previous controller process left running cannot be resumed
  // (their driver state is gone): they are lost and their experiments re-queued
  // from scratch.
  ASSIGN_OR_RETURN(std::vector<AttemptRecord> running,
                   store->ListRunningAttempts());
  for (const AttemptRecord& a : running) {
    RETURN_IF_ERROR(store->EndAttempt(
        a.id, AttemptState::kLost,
        "the controller restarted during this attempt", clock->Now()));
  }
  if (!running.empty()) {
    spdlog::warn(
        "re-queued {} attempt(s) left running by a previous controller",
        running.size());
  }
  return std::unique_ptr<Dispatcher>(
      new Dispatcher(store, clock, options, std::move(specs)));
}

Dispatcher::Dispatcher(Store* store, Clock* clock, DispatcherOptions options,
                       SpecSource specs)
    : store_(store),
      clock_(clock),
      options_(options),
      specs_(std::move(specs)),
      progress_pacer_(kProgressInterval),
      store_writes_(kStoreRetryInterval) {
  if (options_.run_loop_thread) loop_ = std::thread([this] { Loop(); });
}

Dispatcher::~Dispatcher() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (loop_.joinable()) loop_.join();
}

void Dispatcher::Post(std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  events_.push_back(std::move(fn));
}

void Dispatcher::Loop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !events_.empty();
      };
      // Woken by an event, or after options_.tick for what falls due (the
      // deadlines themselves are read from the Clock inside Tick).
      mu_.AwaitWithTimeout(absl::Condition(&ready), options_.tick);
      if (stopping_) return;
    }
    Tick(clock_->Now());
  }
}

void Dispatcher::Tick(absl::Time now) {
  absl::MutexLock round(&tick_mu_);
  RunEvents();
  RunDue(now);
  RunEvents();  // results the store retry re-posted
  if (work_maybe_queued_) AssignWork();
}

void Dispatcher::RunEvents() {
  for (;;) {
    std::deque<std::function<void()>> batch;
    {
      absl::MutexLock lock(&mu_);
      if (events_.empty()) return;
      batch.swap(events_);
    }
    for (auto& fn : batch) fn();
  }
}

void Dispatcher::StoreWrite(const std::string& key, const std::string& what,
                            StoreWrites::Write write) {
  (void)store_writes_.Run(key, what, std::move(write), clock_->Now());
  absl::MutexLock lock(&mu_);
  counters_.store_writes_retried = store_writes_.retried();
  counters_.store_writes_failed = store_writes_.failed();
}

void Dispatcher::SetAgentState(const std::string& agent_id, AgentState state) {
  const absl::Time now = clock_->Now();
  // Sorts after "agent:ID", so a kept record is retried before its state.
  StoreWrite(absl::StrCat("agent:", agent_id, "/state"),
             absl::StrCat("record the state of agent ", agent_id),
             [this, agent_id, state, now] {
               return store_->SetAgentState(agent_id, state, now);
             });
}

void Dispatcher::RecordEnvironment(
    const Session& session, int64_t attempt_id, uint64_t seed,
    const std::optional<HostEnvironment>& reported) {
  EnvironmentOrigin origin;
  origin.agent_id = session.hello.agent_id;
  origin.labels = session.hello.labels;
  origin.facts = session.hello.facts;
  std::string env = EnvironmentRecordJson(origin, seed, reported);
  StoreWrite(absl::StrCat("environment:", attempt_id),
             absl::StrCat("record the environment of attempt ", attempt_id),
             [this, attempt_id, env = std::move(env)] {
               return store_->SetAttemptEnvironment(attempt_id, env);
             });
}

Dispatcher::Session* Dispatcher::SessionFor(
    const std::shared_ptr<AgentLink>& link) {
  for (auto& [id, s] : sessions_)
    if (s.link == link) return &s;
  return nullptr;
}

void Dispatcher::OnConnected(std::shared_ptr<AgentLink> link,
                             AgentHello hello) {
  Post([this, link = std::move(link), hello = std::move(hello)]() mutable {
    const std::string id = hello.agent_id;
    auto old = sessions_.find(id);
    if (old != sessions_.end() && old->second.link != link) {
      old->second.link->Close(
          "a newer connection from the same agent replaced this one");
    }
    Session& s = sessions_[id];
    s.link = link;
    s.hello = hello;
    s.last_seen = clock_->Now();
    s.attempt_id = 0;
    s.refuses_orders.clear();
    AgentRecord rec;
    rec.id = id;
    rec.hostname = hello.facts.hostname;
    rec.labels = hello.labels;
    rec.facts_json = nlohmann::json{{"cpu_model", hello.facts.cpu_model},
                                    {"cpu_cores", hello.facts.cpu_cores},
                                    {"memory_bytes", hello.facts.memory_bytes},
                                    {"os", hello.facts.os},
                                    {"kernel", hello.facts.kernel}}
                         .dump();
    rec.state = AgentState::kIdle;
    rec.last_seen = s.last_seen;
    // Re-attach to the attempt the agent still holds, if it is still ours.
    Active* reattached = nullptr;
    if (hello.current_attempt_id != 0) {
      auto it = active_.find(hello.current_attempt_id);
      if (it != active_.end() && it->second.agent_id == id &&
          it->second.attempt.lease_token == hello.current_lease_token) {
        reattached = &it->second;
        s.attempt_id = it->first;
        it->second.agent_lost_at = absl::InfiniteFuture();
        rec.state = AgentState::kBusy;
      }
    }
    // Any other attempt we still hold for this agent is one it no longer runs
    // (it restarted, or its old stream has not been seen to end yet): lost now,
    // not after the lease timeout.
    std::vector<int64_t> abandoned;
    for (const auto& [attempt_id, a] : active_) {
      if (a.agent_id == id && attempt_id != s.attempt_id)
        abandoned.push_back(attempt_id);
    }
    for (int64_t attempt_id : abandoned) {
      LoseAttempt(
          attempt_id,
          absl::StrCat("agent ", id,
                       " reconnected without it (the agent restarted)"));
    }
    // Registered before the Welcome acknowledges it (DESIGN.md §6).
    // A kept state write is older than this record.
    store_writes_.Drop(absl::StrCat("agent:", id, "/state"));
    StoreWrite(absl::StrCat("agent:", id), absl::StrCat("record agent ", id),
               [this, rec] { return store_->UpsertAgent(rec); });
    {
      absl::MutexLock lock(&mu_);
      connected_[id] = reattached != nullptr ? reattached->experiment.id : 0;
    }
    link->SendWelcome(options_.heartbeat_interval, options_.lease_timeout);
    if (reattached != nullptr) {
      if (!reattached->sent.empty()) {
        // The orders may have been lost with the old stream; the agent
        // de-duplicates by step_seq and resends a result it already has.
        std::vector<int64_t> revoked;
        for (const auto& [seq, sent] : reattached->sent) {
          if (sent.revoked) {
            revoked.push_back(seq);
            continue;
          }
          link->SendStep(reattached->attempt.id,
                         reattached->attempt.lease_token, sent.step);
        }
        // A revocation may have been lost with the old stream too.
        if (!revoked.empty()) {
          link->SendRevoke(reattached->attempt.id,
                           reattached->attempt.lease_token, revoked,
                           "the variant was aborted (KILL or REJECT)");
        }
      } else if (!reattached->lease_accepted) {
        // Its lease reply was lost with the old stream; holding the lease's
        // token is the acceptance.
        reattached->lease_accepted = true;
        FillWindow(*reattached);
      }
    } else if (hello.current_attempt_id != 0) {
      link->SendRelease(hello.current_attempt_id, hello.current_lease_token,
                        "the controller no longer knows this attempt");
    }
    spdlog::info("agent {} connected from host {}", id, hello.facts.hostname);
    work_maybe_queued_ = true;
  });
}

void Dispatcher::OnHeartbeat(const std::shared_ptr<AgentLink>& link,
                             int64_t attempt_id, const std::string& status) {
  Post([this, link, attempt_id, status] {
    Session* s = SessionFor(link);
    if (s == nullptr) return;
    s->last_seen = clock_->Now();
    if (s->status == status) return;
    s->status = status;
    auto it = active_.find(attempt_id);
    if (it != active_.end() && it->second.agent_id == s->hello.agent_id) {
      PublishProgress(it->second.experiment.id);
    }
  });
}

void Dispatcher::OnDisconnected(const std::shared_ptr<AgentLink>& link) {
  Post([this, link] {
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
      if (it->second.link != link) continue;
      const std::string id = it->first;
      if (it->second.attempt_id != 0) {
        auto a = active_.find(it->second.attempt_id);
        if (a != active_.end()) a->second.agent_lost_at = clock_->Now();
      }
      sessions_.erase(it);
      SetAgentState(id, AgentState::kOffline);
      absl::MutexLock lock(&mu_);
      connected_.erase(id);
      spdlog::info("agent {} disconnected", id);
      return;
    }
  });
}

void Dispatcher::OnSamples(const std::shared_ptr<AgentLink>& link,
                           int64_t attempt_id, const std::string& token,
                           std::vector<SampleRecord> samples) {
  Post([this, link, attempt_id, token, samples = std::move(samples)]() mutable {
    if (Session* s = SessionFor(link)) {
      s->last_seen = clock_->Now();
      for (SampleRecord& r : samples) r.agent_id = s->hello.agent_id;
    }
    auto it = active_.find(attempt_id);
    if (it == active_.end() || it->second.attempt.lease_token != token) return;
    // Kept for a retry under their own key: a later batch does not replace it.
    const int64_t n = static_cast<int64_t>(samples.size());
    const int64_t batch = next_sample_batch_++;
    StoreWrite(absl::StrCat("samples:", batch),
               absl::StrCat("store ", n, " samples of attempt ", attempt_id),
               [this, samples = std::move(samples), n] {
                 absl::Status st = store_->RecordSamples(samples);
                 if (st.ok()) {
                   absl::MutexLock lock(&mu_);
                   counters_.samples_stored += n;
                 }
                 return st;
               });
  });
}

void Dispatcher::OnSubmitted(int64_t experiment_id) {
  Post([this, experiment_id] {
    work_maybe_queued_ = true;
    Publish(experiment_id);
  });
}

absl::Status Dispatcher::Cancel(int64_t experiment_id,
                                const std::string& reason) {
  RETURN_IF_ERROR(
      store_->CancelExperiment(experiment_id, reason, clock_->Now()));
  Post([this, experiment_id, reason] {
    for (auto it = active_.begin(); it != active_.end(); ++it) {
      if (it->second.experiment.id != experiment_id) continue;
      auto s = sessions_.find(it->second.agent_id);
      if (s != sessions_.end()) {
        s->second.link->SendRelease(it->first, it->second.attempt.lease_token,
                                    absl::StrCat("cancelled: ", reason));
        s->second.attempt_id = 0;
        SetAgentState(s->first, AgentState::kIdle);
        absl::MutexLock lock(&mu_);
        connected_[s->first] = 0;
      }
      active_.erase(it);
      break;
    }
    Publish(experiment_id);
    work_maybe_queued_ = true;
  });
  return absl::OkStatus();
}

void Dispatcher::RunDue(absl::Time now) {
  if ((!unstored_results_.empty() || !unfinished_attempts_.empty()) &&
      now >= next_store_retry_) {
    next_store_retry_ = now + kStoreRetryInterval;
    for (UnstoredResult& r : std::exchange(unstored_results_, {})) {
      OnStepResult(r.link, r.attempt_id, r.token, std::move(r.outcome));
    }
    for (int64_t attempt_id : std::exchange(unfinished_attempts_, {})) {
      FinishAttempt(attempt_id);
    }
  }
  // An attempt end that reached the store only now re-queues its experiment.
  if (!store_writes_.empty()) work_maybe_queued_ = true;
  store_writes_.RetryDue(now);
  {
    absl::MutexLock lock(&mu_);
    counters_.store_writes_retried = store_writes_.retried();
    counters_.store_writes_failed = store_writes_.failed();
  }
  for (int64_t id : progress_pacer_.Due(now)) Publish(id);
  // An agent passed over for an experiment its host was not ready for may
  // take it again now.
  for (const auto& [experiment_id, agents] : not_ready_) {
    for (const auto& [agent_id, until] : agents)
      if (until <= now) work_maybe_queued_ = true;
  }
  // Agents that stopped talking lose their stream; the lease check below then
  // applies.
  std::vector<std::shared_ptr<AgentLink>> silent;
  for (auto& [id, s] : sessions_) {
    if (now - s.last_seen > options_.lease_timeout) silent.push_back(s.link);
  }
  for (auto& link : silent) {
    link->Close("no heartbeat within the lease timeout");
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
      if (it->second.link != link) continue;
      if (it->second.attempt_id != 0) {
        auto a = active_.find(it->second.attempt_id);
        if (a != active_.end())
          a->second.agent_lost_at = now - options_.lease_timeout;
      }
      absl::MutexLock lock(&mu_);
      connected_.erase(it->first);
      sessions_.erase(it);
      break;
    }
  }
  std::vector<int64_t> lost;
  for (auto& [id, a] : active_) {
    if (now - a.agent_lost_at >= options_.lease_timeout) lost.push_back(id);
  }
  for (int64_t id : lost) {
    LoseAttempt(id, absl::StrCat("agent ", active_[id].agent_id,
                                 " was silent for more than ",
                                 absl::FormatDuration(options_.lease_timeout)));
  }
}

void Dispatcher::PublishProgress(int64_t experiment_id) {
  if (progress_pacer_.MayPublish(experiment_id, clock_->Now()))
    Publish(experiment_id);
}

void Dispatcher::Publish(int64_t experiment_id) {
  progress_pacer_.Published(experiment_id, clock_->Now());
  absl::StatusOr<ExperimentRecord> rec = store_->GetExperiment(experiment_id);
  if (!rec.ok()) return;
  ExperimentView view;
  view.record = std::move(*rec);
  for (auto& [id, a] : active_) {
    if (a.experiment.id != experiment_id) continue;
    view.progress = a.driver->progress();
    if (auto st = sessions_.find(a.agent_id);
        st != sessions_.end() && !st->second.status.empty()) {
      view.progress.current = st->second.status;
    }
    view.attempt_id = id;
    view.agent_id = a.agent_id;
    auto s = sessions_.find(a.agent_id);
    if (s != sessions_.end()) view.hostname = s->second.hello.facts.hostname;
  }
  std::vector<Watcher> to_call;
  {
    absl::MutexLock lock(&mu_);
    const bool ended = view.record.state == ExperimentState::kDone ||
                       view.record.state == ExperimentState::kFailed ||
                       view.record.state == ExperimentState::kCancelled;
    if (ended) {
      live_.erase(experiment_id);
      progress_pacer_.Forget(experiment_id);
    } else {
      live_[experiment_id] = view;
    }
    for (auto& [handle, w] : watchers_)
      if (w.first == experiment_id) to_call.push_back(w.second);
  }
  for (auto& fn : to_call) fn(view);
}

absl::StatusOr<ExperimentView> Dispatcher::View(int64_t experiment_id) {
  ASSIGN_OR_RETURN(ExperimentRecord rec, store_->GetExperiment(experiment_id));
  absl::MutexLock lock(&mu_);
  auto it = live_.find(experiment_id);
  ExperimentView view;
  if (it != live_.end()) view = it->second;
  view.record = std::move(rec);
  return view;
}

bool Dispatcher::IsConnected(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  return connected_.contains(agent_id);
}

int64_t Dispatcher::CurrentExperimentOf(const std::string& agent_id) {
  absl::MutexLock lock(&mu_);
  auto it = connected_.find(agent_id);
  return it == connected_.end() ? 0 : it->second;
}

int64_t Dispatcher::Subscribe(int64_t experiment_id, Watcher fn) {
  absl::MutexLock lock(&mu_);
  const int64_t handle = next_watcher_++;
  watchers_[handle] = {experiment_id, std::move(fn)};
  return handle;
}

void Dispatcher::Unsubscribe(int64_t handle) {
  absl::MutexLock lock(&mu_);
  watchers_.erase(handle);
}

DispatcherCounters Dispatcher::counters() {
  absl::MutexLock lock(&mu_);
  return counters_;
}

}  // namespace benchfleet
