#include "controller/scheduler/dispatcher.h"

#include <fstream>
#include <random>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/spec_loader.h"
#include "common/status_macros.h"
#include "controller/report/report.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace benchfleet {
namespace {

// How often results and attempt ends that the store could not take are tried
// again.
constexpr absl::Duration kStoreRetryInterval = absl::Seconds(1);

// Store errors worth retrying: the database is down, busy, or out of space —
// an operator or a restart can fix them without changing the request.
bool StoreMayRecover(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s) ||
         absl::IsAborted(s) || absl::IsResourceExhausted(s);
}

std::string RandomBytes(size_t n) {
  std::string bytes(n, '\0');
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  if (!urandom.read(bytes.data(), static_cast<std::streamsize>(n))) {
    // /dev/urandom is always there on Linux; fall back to the seeded device
    // anyway.
    std::random_device rd;
    for (char& c : bytes) c = static_cast<char>(rd());
  }
  return bytes;
}

// An attempt's environment record: what it ran on and with which seed, for
// `benchfleet show ID --env`, for reproducing the order and for comparing
// hosts. The keys are a contract (README, campaign history): seed, agent_id,
// hostname, cpu_model, cpu_cores, memory_bytes, os, kernel, labels, gpus,
// governor, turbo, toolchain, commit, dirty, fingerprint. `reported` holds
// what the agent sent with its acceptance (empty until then).
nlohmann::json EnvironmentJson(const AgentHello& hello, uint64_t seed,
                               std::optional<HostEnvironment> reported) {
  HostEnvironment env = reported.value_or(HostEnvironment{});
  env.hostname = hello.facts.hostname;
  env.cpu_model = hello.facts.cpu_model;
  env.cpu_cores = hello.facts.cpu_cores;
  env.memory_bytes = hello.facts.memory_bytes;
  env.os = hello.facts.os;
  env.kernel = hello.facts.kernel;
  nlohmann::json gpus = nlohmann::json::array();
  for (const GpuIdentity& g : env.gpus) {
    gpus.push_back({{"name", g.name},
                    {"uuid", g.uuid},
                    {"memory_total_bytes", g.memory_total_bytes}});
  }
  nlohmann::json j;
  j["seed"] = std::to_string(seed);
  j["agent_id"] = hello.agent_id;
  j["hostname"] = env.hostname;
  j["cpu_model"] = env.cpu_model;
  j["cpu_cores"] = env.cpu_cores;
  j["memory_bytes"] = env.memory_bytes;
  j["os"] = env.os;
  j["kernel"] = env.kernel;
  j["labels"] = hello.labels;
  j["gpus"] = std::move(gpus);
  j["governor"] = env.governor;
  j["turbo"] = env.turbo;
  j["toolchain"] = env.toolchain;
  j["commit"] = env.commit;
  j["dirty"] = env.dirty;
  // Until the agent reports, the fingerprint covers the host facts only (and so
  // differs from any complete one).
  j["fingerprint"] = HostFingerprint(env);
  j["agent_reported"] = reported.has_value();
  return j;
}

// StepResultRecord::host_json: the summary under v1::HostSummary's field
// names; "{}" when the agent sent none.
std::string HostSummaryJson(const std::optional<StepHostSummary>& host) {
  nlohmann::json out = nlohmann::json::object();
  if (host) {
    out["samples"] = host->samples;
    out["max_cpu_temp_c"] = host->max_cpu_temp_c;
    out["max_gpu_temp_c"] = host->max_gpu_temp_c;
    out["min_freq_mhz"] = host->min_freq_mhz;
    out["mean_cpu_util"] = host->mean_cpu_util;
    out["throttle_delta"] = host->throttle_delta;
    out["max_competing_cpu"] = host->max_competing_cpu;
    out["top_competitor"] = host->top_competitor;
  }
  // A process name is whatever bytes the host gave it.
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Dispatcher>> Dispatcher::Create(
    Store* store, Clock* clock, DispatcherOptions options) {
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
  return std::unique_ptr<Dispatcher>(new Dispatcher(store, clock, options));
}

Dispatcher::Dispatcher(Store* store, Clock* clock, DispatcherOptions options)
    : store_(store), clock_(clock), options_(options) {
  loop_ = std::thread([this] { Loop(); });
}

Dispatcher::~Dispatcher() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  loop_.join();
}

void Dispatcher::Post(std::function<void()> fn) {
  absl::MutexLock lock(&mu_);
  events_.push_back(std::move(fn));
}

void Dispatcher::Loop() {
  absl::Time next_tick = absl::Now();
  for (;;) {
    std::deque<std::function<void()>> batch;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !events_.empty();
      };
      mu_.AwaitWithDeadline(absl::Condition(&ready), next_tick);
      if (stopping_) return;
      batch.swap(events_);
    }
    for (auto& fn : batch) fn();
    if (absl::Now() >= next_tick) {
      Tick();
      next_tick = absl::Now() + options_.tick;
    }
    if (work_maybe_queued_) AssignWork();
  }
}

Dispatcher::Session* Dispatcher::SessionFor(
    const std::shared_ptr<AgentLink>& link) {
  for (auto& [id, s] : sessions_)
    if (s.link == link) return &s;
  return nullptr;
}

std::string Dispatcher::NewToken() {
  return absl::BytesToHexString(RandomBytes(16));
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
    if (absl::Status st = store_->UpsertAgent(rec); !st.ok()) {
      spdlog::error("could not record agent {}: {}", id, st.ToString());
    }
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

void Dispatcher::OnLeaseReply(const std::shared_ptr<AgentLink>& link,
                              int64_t attempt_id, const std::string& token,
                              bool accepted, const std::string& reason,
                              std::optional<HostEnvironment> environment) {
  Post([=, this, environment = std::move(environment)] {
    Session* s = SessionFor(link);
    if (s == nullptr) return;
    s->last_seen = clock_->Now();
    auto it = active_.find(attempt_id);
    if (it == active_.end() || it->second.attempt.lease_token != token) return;
    if (!accepted) {
      LoseAttempt(attempt_id, absl::StrCat("agent ", s->hello.agent_id,
                                           " refused the lease: ", reason));
      return;
    }
    // Recorded even when the acceptance is a repeat: after a reconnect the
    // token the agent holds counts as acceptance, and its reply (with the
    // environment) may come only later.
    if (environment) {
      const std::string env =
          EnvironmentJson(s->hello, it->second.attempt.seed, environment)
              .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      if (absl::Status st = store_->SetAttemptEnvironment(attempt_id, env);
          !st.ok()) {
        spdlog::error("could not record the environment of attempt {}: {}",
                      attempt_id, st.ToString());
      }
    }
    if (it->second.lease_accepted)
      return;  // a repeated reply must not start a second step
    it->second.lease_accepted = true;
    FillWindow(it->second);
  });
}

void Dispatcher::OnStepResult(const std::shared_ptr<AgentLink>& link,
                              int64_t attempt_id, const std::string& token,
                              StepOutcome outcome) {
  Post([=, this, outcome = std::move(outcome)] {
    Session* s = SessionFor(link);
    if (s != nullptr) s->last_seen = clock_->Now();
    auto it = active_.find(attempt_id);
    const bool ours =
        it != active_.end() && it->second.attempt.lease_token == token;
    StepResultRecord rec;
    rec.attempt_id = attempt_id;
    rec.step_seq = outcome.seq;
    if (ours) {
      if (auto sent = it->second.sent.find(outcome.seq);
          sent != it->second.sent.end()) {
        const PlannedStep& step = sent->second.step;
        rec.kind = StepKindName(step.kind);
        rec.variant = step.variant;
        rec.input = step.input;
      }
    }
    rec.wall_ns = outcome.wall_ns;
    rec.user_ns = outcome.user_ns;
    rec.sys_ns = outcome.sys_ns;
    rec.max_rss_bytes = outcome.max_rss_bytes;
    rec.exit_code = outcome.exit_code;
    rec.term_signal = outcome.term_signal;
    rec.timed_out = outcome.timed_out;
    rec.output_digest = outcome.output_digest;
    rec.metrics_json = nlohmann::json(outcome.metrics).dump();
    rec.error = outcome.error;
    rec.finished_at = clock_->Now();
    rec.host_json = HostSummaryJson(outcome.host);
    rec.host_flags = outcome.host_flags;
    rec.gate_wait_ns = outcome.gate_wait_ns;
    // Commit before acknowledging (DESIGN.md §6).
    absl::StatusOr<RecordOutcome> stored = store_->RecordStepResult(rec, token);
    if (!stored.ok() && ours && StoreMayRecover(stored.status())) {
      // The store is unreachable (a PgStore has already reconnected and
      // retried for its reconnect timeout). Nothing was acknowledged, so
      // nothing is lost: keep the result and store it on a later tick. The
      // agent keeps it too until it is acknowledged.
      spdlog::warn(
          "could not store result {} of attempt {} ({}); trying again in {}",
          outcome.seq, attempt_id, stored.status().ToString(),
          absl::FormatDuration(kStoreRetryInterval));
      if (unstored_results_.empty() && unfinished_attempts_.empty())
        next_store_retry_ = clock_->Now() + kStoreRetryInterval;
      unstored_results_.push_back({link, attempt_id, token, outcome});
      return;
    }
    if (!stored.ok() && ours && !absl::IsFailedPrecondition(stored.status())) {
      // The store refuses this result for good: the attempt cannot go on
      // without it. Losing the attempt re-queues the experiment (bounded by
      // its max_attempts) with the reason.
      const std::string reason =
          absl::StrCat("the store refused result ", outcome.seq, ": ",
                       stored.status().message());
      if (s != nullptr)
        s->link->SendAck(attempt_id, outcome.seq, false, reason);
      LoseAttempt(attempt_id, reason);
      return;
    }
    if (!stored.ok()) {
      if (absl::IsFailedPrecondition(stored.status()) || !ours) {
        absl::MutexLock lock(&mu_);
        ++counters_.stale_results;
      }
      if (s != nullptr)
        s->link->SendAck(attempt_id, outcome.seq, false,
                         std::string(stored.status().message()));
      return;
    }
    if (*stored == RecordOutcome::kDuplicate) {
      {
        absl::MutexLock lock(&mu_);
        ++counters_.duplicate_results;
      }
      if (s != nullptr)
        s->link->SendAck(attempt_id, outcome.seq, true, "duplicate");
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      ++counters_.results_stored;
    }
    if (s != nullptr) s->link->SendAck(attempt_id, outcome.seq, true, "");
    if (!ours) return;
    Active& active = it->second;
    auto sent = active.sent.find(outcome.seq);
    if (sent == active.sent.end()) return;
    const bool revoked = sent->second.revoked;
    active.sent.erase(sent);
    if (revoked) return;  // finished before the revocation reached the agent
    active.driver->OnResult(outcome);
    std::vector<int64_t> revoke = active.driver->TakeRevoked();
    if (!revoke.empty() && !active.driver->finished()) {
      for (int64_t seq : revoke) {
        if (auto r = active.sent.find(seq); r != active.sent.end())
          r->second.revoked = true;
      }
      if (Session* holder = SessionFor(link); holder != nullptr) {
        holder->link->SendRevoke(attempt_id, token, revoke,
                                 "the variant was aborted (KILL or REJECT)");
      }
    }
    FillWindow(active);
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
      (void)store_->SetAgentState(id, AgentState::kOffline, clock_->Now());
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
    if (absl::Status st = store_->RecordSamples(samples); !st.ok()) {
      spdlog::error("could not store {} samples of attempt {}: {}",
                    samples.size(), attempt_id, st.ToString());
      return;
    }
    absl::MutexLock lock(&mu_);
    counters_.samples_stored += static_cast<int64_t>(samples.size());
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
        (void)store_->SetAgentState(s->first, AgentState::kIdle, clock_->Now());
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

void Dispatcher::Tick() {
  if ((!unstored_results_.empty() || !unfinished_attempts_.empty()) &&
      clock_->Now() >= next_store_retry_) {
    next_store_retry_ = clock_->Now() + kStoreRetryInterval;
    for (UnstoredResult& r : std::exchange(unstored_results_, {})) {
      OnStepResult(r.link, r.attempt_id, r.token, std::move(r.outcome));
    }
    for (int64_t attempt_id : std::exchange(unfinished_attempts_, {})) {
      FinishAttempt(attempt_id);
    }
  }
  for (int64_t id : std::vector<int64_t>(progress_pending_.begin(),
                                         progress_pending_.end())) {
    PublishProgress(id);
  }
  const absl::Time now = clock_->Now();
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

void Dispatcher::AssignWork() {
  work_maybe_queued_ = false;
  for (auto& [id, s] : sessions_) {
    if (s.attempt_id != 0) continue;
    absl::StatusOr<AgentRecord> rec = store_->GetAgent(id);
    if (rec.ok() && rec->cordoned) continue;
    StartAttempt(s);
  }
}

void Dispatcher::StartAttempt(Session& session) {
  const std::string token = NewToken();
  uint64_t seed = 0;
  {
    const std::string bytes = RandomBytes(8);
    for (char c : bytes) seed = (seed << 8) | static_cast<unsigned char>(c);
  }
  absl::StatusOr<std::optional<Store::Claim>> claim =
      store_->ClaimNextExperiment(
          session.hello.agent_id, session.hello.labels, token, seed,
          NotReadyHere(session.hello.agent_id), clock_->Now());
  if (!claim.ok()) {
    spdlog::error("could not claim work for agent {}: {}",
                  session.hello.agent_id, claim.status().ToString());
    return;
  }
  if (!claim->has_value()) return;
  Store::Claim c = std::move(**claim);
  SpecLoadOptions opts;
  opts.base_dir = c.experiment.workdir;
  absl::StatusOr<ExperimentSpec> spec =
      ParseSpec(c.experiment.spec_yaml, c.experiment.spec_path, opts);
  if (!spec.ok()) {
    (void)store_->EndAttempt(
        c.attempt.id, AttemptState::kFailed,
        absl::StrCat("the stored spec no longer validates: ",
                     spec.status().message()),
        clock_->Now());
    Publish(c.experiment.id);
    work_maybe_queued_ = true;
    return;
  }
  // A spec seed fixes the order; otherwise the claim's random seed is used and
  // recorded.
  const uint64_t effective_seed = spec->seed.value_or(c.attempt.seed);
  const GateSpec gates = spec->gates;
  const std::string workdir = spec->workdir;
  Active active;
  active.attempt = c.attempt;
  active.attempt.seed = effective_seed;
  active.experiment = c.experiment;
  active.agent_id = session.hello.agent_id;
  active.driver = std::make_unique<AttemptDriver>(
      std::move(*spec), effective_seed, c.experiment.number);
  const int64_t attempt_id = c.attempt.id;
  session.attempt_id = attempt_id;
  {
    // The host facts now; the agent's report is merged in when it accepts.
    const nlohmann::json env =
        EnvironmentJson(session.hello, effective_seed, std::nullopt);
    if (absl::Status st = store_->SetAttemptEnvironment(
            attempt_id,
            env.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        !st.ok()) {
      spdlog::error("could not record the environment of attempt {}: {}",
                    attempt_id, st.ToString());
    }
  }
  (void)store_->SetAgentState(session.hello.agent_id, AgentState::kBusy,
                              clock_->Now());
  {
    absl::MutexLock lock(&mu_);
    connected_[session.hello.agent_id] = c.experiment.id;
  }
  session.link->SendLease(attempt_id, token, c.experiment.id, c.experiment.name,
                          gates, workdir);
  spdlog::info("experiment {} ({}) leased to agent {} as attempt {}",
               c.experiment.id, c.experiment.name, session.hello.agent_id,
               attempt_id);
  active_.emplace(attempt_id, std::move(active));
  Publish(c.experiment.id);
}

std::set<int64_t> Dispatcher::NotReadyHere(const std::string& agent_id) {
  std::set<int64_t> skip;
  const absl::Time now = clock_->Now();
  for (auto it = not_ready_.begin(); it != not_ready_.end();) {
    std::map<std::string, absl::Time>& agents = it->second;
    std::erase_if(agents, [now](const auto& a) { return a.second <= now; });
    if (agents.empty()) {
      it = not_ready_.erase(it);
      continue;
    }
    if (agents.contains(agent_id)) skip.insert(it->first);
    ++it;
  }
  return skip;
}

history::BaselineReference Dispatcher::BaselineReferenceFor(
    const Active& active) {
  history::BaselineReference ref;
  absl::StatusOr<AttemptRecord> attempt = store_->GetAttempt(active.attempt.id);
  if (!attempt.ok()) {
    ref.why_not = absl::StrCat(
        "not compared with history: could not read this attempt's environment "
        "from the store (",
        attempt.status().message(), ")");
    return ref;
  }
  // Without a fingerprint and commit there is nothing to match: say so
  // without reading the history.
  ref = history::FindBaselineReference(attempt->environment_json,
                                       active.experiment.id, {});
  if (!ref.no_history) return ref;
  HistoryQuery q;
  q.name = active.experiment.name;
  absl::StatusOr<std::vector<HistoryEntry>> entries = store_->ListHistory(q);
  if (!entries.ok()) {
    ref.no_history = false;
    ref.why_not = absl::StrCat(
        "not compared with history: the store could not list earlier "
        "attempts of ",
        active.experiment.name, " (", entries.status().message(),
        "); check the store's logs");
    return ref;
  }
  std::vector<history::PastAttempt> past;
  past.reserve(entries->size());
  for (HistoryEntry& e : *entries) {
    history::PastAttempt p;
    p.experiment_id = e.experiment.id;
    p.experiment_number = e.experiment.number;
    p.completed = e.experiment.state == ExperimentState::kDone &&
                  e.attempt.state == AttemptState::kDone;
    p.completed_at = e.attempt.ended_at;
    p.environment_json = std::move(e.attempt.environment_json);
    p.report_json = std::move(e.experiment.report_json);
    past.push_back(std::move(p));
  }
  return history::FindBaselineReference(attempt->environment_json,
                                        active.experiment.id, past);
}

void Dispatcher::FillWindow(Active& active) {
  if (!active.history_checked) {
    // Once per attempt, at its first step: the lease is accepted, so the
    // agent's environment (fingerprint, commit) is in the store.
    active.history_checked = true;
    active.driver->SetBaselineReference(BaselineReferenceFor(active));
  }
  auto s = sessions_.find(active.agent_id);
  const size_t window = static_cast<size_t>(std::max(1, options_.steps_ahead));
  while (!active.driver->finished() && active.driver->steps_out() < window) {
    std::optional<PlannedStep> step = active.driver->Next();
    if (!step) break;  // the plan waits for the steps out
    if (s != sessions_.end()) {
      s->second.link->SendStep(active.attempt.id, active.attempt.lease_token,
                               *step);
    }
    const int64_t seq = step->seq;
    active.sent.emplace(seq, Active::Sent{std::move(*step), false});
  }
  if (active.driver->finished()) {
    FinishAttempt(active.attempt.id);
    return;
  }
  PublishProgress(active.experiment.id);
}

void Dispatcher::FinishAttempt(int64_t attempt_id) {
  auto it = active_.find(attempt_id);
  if (it == active_.end()) return;
  Active& active = it->second;
  ExperimentReport report = active.driver->BuildReport();
  auto s = sessions_.find(active.agent_id);
  if (s != sessions_.end()) report.host = s->second.hello.facts.hostname;
  // The "DISCARDed before" flag found at submission (FleetServiceImpl::Submit).
  if (!active.experiment.discarded_before.empty()) {
    report.warnings.push_back(active.experiment.discarded_before);
  }
  const std::string text = RenderReportText(report);
  const std::string json = ReportToJson(report);
  absl::Status st;
  if (report.host_not_ready) {
    // No verdict and not the user's fault: back to the queue, other hosts
    // first (its own retry cap; Store::EndAttempt).
    st = store_->EndAttempt(attempt_id, AttemptState::kHostNotReady,
                            report.failure, clock_->Now());
    if (st.ok()) {
      not_ready_[active.experiment.id][active.agent_id] =
          clock_->Now() + options_.not_ready_retry_after;
    }
  } else if (report.failed) {
    st = store_->EndAttempt(attempt_id, AttemptState::kFailed, report.failure,
                            clock_->Now());
  } else {
    std::vector<VerdictRecord> verdicts;
    for (const CandidateReport& c : report.candidates) {
      VerdictRecord v;
      v.experiment_id = active.experiment.id;
      v.attempt_id = attempt_id;
      v.variant = c.variant;
      v.verdict = c.verdict;
      v.reason = c.reason;
      v.change = c.change;
      verdicts.push_back(std::move(v));
    }
    st = store_->CompleteExperiment(attempt_id, active.attempt.lease_token,
                                    json, text, verdicts, clock_->Now());
  }
  if (!st.ok() && StoreMayRecover(st)) {
    // The store is unreachable: keep the attempt (and the agent's lease) as
    // they are and store the end later; releasing now would leave the
    // experiment running in the store with no one to finish it.
    spdlog::warn(
        "could not store the end of attempt {} ({}); trying again in {}",
        attempt_id, st.ToString(), absl::FormatDuration(kStoreRetryInterval));
    if (unstored_results_.empty() && unfinished_attempts_.empty())
      next_store_retry_ = clock_->Now() + kStoreRetryInterval;
    unfinished_attempts_.push_back(attempt_id);
    return;
  }
  if (!st.ok())
    spdlog::error("could not store the end of attempt {}: {}", attempt_id,
                  st.ToString());
  if (s != sessions_.end()) {
    s->second.link->SendRelease(attempt_id, active.attempt.lease_token,
                                report.host_not_ready ? "host not ready"
                                : report.failed       ? "attempt failed"
                                                      : "attempt complete");
    s->second.attempt_id = 0;
    (void)store_->SetAgentState(active.agent_id, AgentState::kIdle,
                                clock_->Now());
    absl::MutexLock lock(&mu_);
    connected_[active.agent_id] = 0;
  }
  const int64_t experiment_id = active.experiment.id;
  spdlog::info(
      "experiment {} attempt {} finished{}", experiment_id, attempt_id,
      report.failed ? absl::StrCat(" without verdict: ", report.failure) : "");
  active_.erase(it);
  Publish(experiment_id);
  work_maybe_queued_ = true;
}

void Dispatcher::LoseAttempt(int64_t attempt_id, const std::string& reason) {
  auto it = active_.find(attempt_id);
  if (it == active_.end()) return;
  const int64_t experiment_id = it->second.experiment.id;
  // Commit the loss before telling the agent (DESIGN.md §6).
  if (absl::Status st = store_->EndAttempt(attempt_id, AttemptState::kLost,
                                           reason, clock_->Now());
      !st.ok()) {
    spdlog::error("could not mark attempt {} lost: {}", attempt_id,
                  st.ToString());
  }
  auto s = sessions_.find(it->second.agent_id);
  if (s != sessions_.end() && s->second.attempt_id == attempt_id) {
    s->second.link->SendRelease(attempt_id, it->second.attempt.lease_token,
                                reason);
    s->second.attempt_id = 0;
    (void)store_->SetAgentState(s->first, AgentState::kIdle, clock_->Now());
    absl::MutexLock lock(&mu_);
    connected_[s->first] = 0;
  }
  spdlog::warn("attempt {} of experiment {} lost: {}", attempt_id,
               experiment_id, reason);
  {
    absl::MutexLock lock(&mu_);
    ++counters_.attempts_lost;
  }
  active_.erase(it);
  Publish(experiment_id);
  work_maybe_queued_ = true;
}

void Dispatcher::PublishProgress(int64_t experiment_id) {
  constexpr absl::Duration kProgressInterval = absl::Milliseconds(250);
  auto last = last_publish_.find(experiment_id);
  if (last != last_publish_.end() &&
      absl::Now() - last->second < kProgressInterval) {
    progress_pending_.insert(experiment_id);
    return;
  }
  Publish(experiment_id);
}

void Dispatcher::Publish(int64_t experiment_id) {
  progress_pending_.erase(experiment_id);
  last_publish_[experiment_id] = absl::Now();
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
      last_publish_.erase(experiment_id);
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
