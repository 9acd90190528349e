// Dispatcher (dispatcher.h): construction, the loop thread and Tick, the
// events from agents handed to the AgentRegistry and the AttemptRunner,
// samples, cancel, and the views published to watchers.
#include "controller/scheduler/dispatcher.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
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
      progress_pacer_(kProgressInterval),
      store_writes_(AttemptRunner::kStoreRetryInterval),
      agents_(
          store, clock,
          [this](const std::string& key, const std::string& what,
                 StoreWrites::Write write) {
            StoreWrite(key, what, std::move(write));
          },
          [this](const std::string& key) { store_writes_.Drop(key); }),
      attempts_(store, clock, &agents_,
                AttemptRunner::Options{options.steps_ahead,
                                       options.not_ready_retry_after},
                std::move(specs),
                AttemptRunner::Hooks{
                    [this](int64_t id) { Publish(id); },
                    [this](int64_t id) { PublishProgress(id); },
                    [this] { work_maybe_queued_ = true; },
                    [this](const std::string& key, const std::string& what,
                           StoreWrites::Write write) {
                      StoreWrite(key, what, std::move(write));
                    }}) {
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

void Dispatcher::OnConnected(std::shared_ptr<AgentLink> link,
                             AgentHello hello) {
  Post([this, link = std::move(link), hello = std::move(hello)]() mutable {
    const std::string id = hello.agent_id;
    AgentSession& s = agents_.Connect(link, hello);
    // Re-attach to the attempt the agent still holds, if it is still ours;
    // any other it held is lost.
    const int64_t experiment_id = attempts_.Reattach(
        id, hello.current_attempt_id, hello.current_lease_token);
    const bool reattached = experiment_id != 0;
    if (reattached) s.attempt_id = hello.current_attempt_id;
    agents_.Register(id, reattached ? AgentState::kBusy : AgentState::kIdle,
                     experiment_id);
    link->SendWelcome(options_.heartbeat_interval, options_.lease_timeout);
    if (reattached) {
      attempts_.Resume(hello.current_attempt_id, *link);
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
    AgentSession* s = agents_.Find(link);
    if (s == nullptr) return;
    s->last_seen = clock_->Now();
    if (s->status == status) return;
    s->status = status;
    std::optional<AttemptRunner::Live> live =
        attempts_.LiveOfAttempt(attempt_id);
    if (live && live->agent_id == s->hello.agent_id) {
      PublishProgress(live->experiment_id);
    }
  });
}

void Dispatcher::OnDisconnected(const std::shared_ptr<AgentLink>& link) {
  Post([this, link] {
    const absl::Time now = clock_->Now();
    std::optional<AgentSession> gone = agents_.Disconnect(link);
    if (gone && gone->attempt_id != 0) {
      attempts_.AgentGone(gone->attempt_id, now);
    }
  });
}

void Dispatcher::OnSamples(const std::shared_ptr<AgentLink>& link,
                           int64_t attempt_id, const std::string& token,
                           std::vector<SampleRecord> samples) {
  Post([this, link, attempt_id, token, samples = std::move(samples)]() mutable {
    if (AgentSession* s = agents_.Find(link)) {
      s->last_seen = clock_->Now();
      for (SampleRecord& r : samples) r.agent_id = s->hello.agent_id;
    }
    if (!attempts_.Holds(attempt_id, token)) return;
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
    attempts_.Cancelled(experiment_id, reason);
    Publish(experiment_id);
    work_maybe_queued_ = true;
  });
  return absl::OkStatus();
}

void Dispatcher::RunDue(absl::Time now) {
  attempts_.RetryDue(now, [this](AttemptRunner::UnstoredResult& r) {
    OnStepResult(r.link, r.attempt_id, r.token, std::move(r.outcome));
  });
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
  if (attempts_.NotReadyExpired(now)) work_maybe_queued_ = true;
  // Agents that stopped talking lose their stream; the lease check below then
  // applies.
  for (const AgentSession& s :
       agents_.DropSilent(now, options_.lease_timeout)) {
    if (s.attempt_id != 0) {
      attempts_.AgentGone(s.attempt_id, now - options_.lease_timeout);
    }
  }
  attempts_.LoseExpired(now, options_.lease_timeout);
}

void Dispatcher::AssignWork() {
  work_maybe_queued_ = false;
  agents_.ForEachAvailable([this](AgentSession& s) { attempts_.Start(s); });
}

void Dispatcher::OnLeaseReply(const std::shared_ptr<AgentLink>& link,
                              int64_t attempt_id, const std::string& token,
                              bool accepted, const std::string& reason,
                              std::optional<HostEnvironment> environment,
                              bool signature_refused) {
  Post([=, this, environment = std::move(environment)] {
    AgentSession* s = agents_.Find(link);
    if (s == nullptr) return;
    s->last_seen = clock_->Now();
    attempts_.OnLeaseReply(*s, attempt_id, token, accepted, reason, environment,
                           signature_refused);
  });
}

void Dispatcher::OnStepResult(const std::shared_ptr<AgentLink>& link,
                              int64_t attempt_id, const std::string& token,
                              StepOutcome outcome) {
  Post([=, this, outcome = std::move(outcome)]() mutable {
    attempts_.OnStepResult(link, attempt_id, token, std::move(outcome));
  });
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
  if (std::optional<AttemptRunner::Live> live =
          attempts_.LiveOf(experiment_id)) {
    view.progress = std::move(live->progress);
    const AgentSession* s = agents_.Find(live->agent_id);
    if (s != nullptr && !s->status.empty()) view.progress.current = s->status;
    view.attempt_id = live->attempt_id;
    view.agent_id = live->agent_id;
    if (s != nullptr) view.hostname = s->hello.facts.hostname;
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
  return agents_.IsConnected(agent_id);
}

int64_t Dispatcher::CurrentExperimentOf(const std::string& agent_id) {
  return agents_.CurrentExperimentOf(agent_id);
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
  const AttemptRunnerCounters attempts = attempts_.counters();
  absl::MutexLock lock(&mu_);
  DispatcherCounters out = counters_;
  out.stale_results = attempts.stale_results;
  out.duplicate_results = attempts.duplicate_results;
  out.results_stored = attempts.results_stored;
  out.attempts_lost = attempts.attempts_lost;
  return out;
}

}  // namespace benchfleet
