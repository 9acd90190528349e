#include "controller/scheduler/attempt_runner.h"

#include <algorithm>
#include <fstream>
#include <random>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "controller/report/report.h"
#include "controller/scheduler/environment_record.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace benchfleet {
namespace {

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

std::string NewToken() { return absl::BytesToHexString(RandomBytes(16)); }

}  // namespace

AttemptRunner::AttemptRunner(Store* store, Clock* clock, AgentRegistry* agents,
                             Options options, SpecSource specs, Hooks hooks)
    : store_(store),
      clock_(clock),
      agents_(agents),
      options_(options),
      specs_(std::move(specs)),
      hooks_(std::move(hooks)) {}

void AttemptRunner::RecordEnvironment(
    const AgentSession& session, int64_t attempt_id, uint64_t seed,
    const std::optional<HostEnvironment>& reported) {
  EnvironmentOrigin origin;
  origin.agent_id = session.hello.agent_id;
  origin.labels = session.hello.labels;
  origin.facts = session.hello.facts;
  std::string env = EnvironmentRecordJson(origin, seed, reported);
  hooks_.store_write(
      absl::StrCat("environment:", attempt_id),
      absl::StrCat("record the environment of attempt ", attempt_id),
      [this, attempt_id, env = std::move(env)] {
        return store_->SetAttemptEnvironment(attempt_id, env);
      });
}

bool AttemptRunner::Holds(int64_t attempt_id, const std::string& token) const {
  auto it = active_.find(attempt_id);
  return it != active_.end() && it->second.attempt.lease_token == token;
}

void AttemptRunner::OnLeaseReply(
    AgentSession& session, int64_t attempt_id, const std::string& token,
    bool accepted, const std::string& reason,
    const std::optional<HostEnvironment>& environment, bool signature_refused) {
  auto it = active_.find(attempt_id);
  if (it == active_.end() || it->second.attempt.lease_token != token) return;
  if (!accepted) {
    if (signature_refused && session.refuses_orders.empty()) {
      // Leasing again would only be refused again, at once and forever.
      session.refuses_orders = reason;
      spdlog::error(
          "agent {} refuses this controller's signed orders; no work is "
          "offered to it until it reconnects with the matching "
          "controller_public_key: {}",
          session.hello.agent_id, reason);
    }
    // The experiment goes back to the queue, other hosts first: this one
    // said it cannot run it (a work directory it does not have, a checkout
    // or bundle it could not make), and would most likely say so again.
    // (A signature refusal already stops all work on this stream.)
    if (!signature_refused) {
      not_ready_[it->second.experiment.id][session.hello.agent_id] =
          clock_->Now() + options_.not_ready_retry_after;
    }
    LoseAttempt(attempt_id, absl::StrCat("agent ", session.hello.agent_id,
                                         " refused the lease: ", reason));
    return;
  }
  // Recorded even when the acceptance is a repeat: after a reconnect the
  // token the agent holds counts as acceptance, and its reply (with the
  // environment) may come only later.
  if (environment) {
    RecordEnvironment(session, attempt_id, it->second.attempt.seed,
                      environment);
  }
  if (it->second.lease_accepted)
    return;  // a repeated reply must not start a second step
  it->second.lease_accepted = true;
  FillWindow(it->second);
}

void AttemptRunner::OnStepResult(const std::shared_ptr<AgentLink>& link,
                                 int64_t attempt_id, const std::string& token,
                                 StepOutcome outcome) {
  AgentSession* s = agents_->Find(link);
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
    if (s != nullptr) s->link->SendAck(attempt_id, outcome.seq, false, reason);
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
    if (AgentSession* holder = agents_->Find(link); holder != nullptr) {
      holder->link->SendRevoke(attempt_id, token, revoke,
                               "the variant was aborted (KILL or REJECT)");
    }
  }
  FillWindow(active);
}

void AttemptRunner::Start(AgentSession& session) {
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
  absl::StatusOr<ExperimentSpec> spec = specs_(c.experiment);
  if (!spec.ok()) {
    // Unavailable: the spec is fine but what it needs is not stored yet (the
    // commits of source.repo, recorded right after the experiment): lost, so
    // it is queued again.
    const bool retry = absl::IsUnavailable(spec.status());
    const std::string reason =
        retry ? std::string(spec.status().message())
              : absl::StrCat("the stored spec no longer validates: ",
                             spec.status().message());
    const AttemptState state =
        retry ? AttemptState::kLost : AttemptState::kFailed;
    const absl::Time now = clock_->Now();
    const int64_t attempt_id = c.attempt.id;
    hooks_.store_write(absl::StrCat("end:", attempt_id),
                       absl::StrCat("end attempt ", attempt_id),
                       [this, attempt_id, reason, state, now] {
                         return store_->EndAttempt(attempt_id, state, reason,
                                                   now);
                       });
    hooks_.publish(c.experiment.id);
    hooks_.work_queued();
    return;
  }
  // A spec seed fixes the order; otherwise the claim's random seed is used and
  // recorded.
  const uint64_t effective_seed = spec->seed.value_or(c.attempt.seed);
  const GateSpec gates = spec->gates;
  const std::string workdir = spec->workdir;
  std::vector<VariantSourceRecord> sources;
  if (!spec->source_repo.empty()) {
    for (const VariantSpec& v : spec->variants) {
      VariantSourceRecord s;
      s.variant = v.name;
      s.repo = spec->source_repo;
      s.ref = spec->RefOf(v);
      s.commit = v.commit;
      sources.push_back(std::move(s));
    }
  } else if (!spec->source_bundle_digest.empty()) {
    for (const VariantSpec& v : spec->variants) {
      VariantSourceRecord s;
      s.variant = v.name;
      s.bundle_digest = spec->source_bundle_digest;
      sources.push_back(std::move(s));
    }
  }
  Active active;
  active.attempt = c.attempt;
  active.attempt.seed = effective_seed;
  active.experiment = c.experiment;
  active.agent_id = session.hello.agent_id;
  active.driver = std::make_unique<AttemptDriver>(
      std::move(*spec), effective_seed, c.experiment.number);
  const int64_t attempt_id = c.attempt.id;
  // The host facts now; the agent's report is merged in when it accepts.
  RecordEnvironment(session, attempt_id, effective_seed, std::nullopt);
  agents_->Busy(session, attempt_id, c.experiment.id);
  session.link->SendLease(attempt_id, token, c.experiment.id, c.experiment.name,
                          gates, workdir, sources);
  spdlog::info("experiment {} ({}) leased to agent {} as attempt {}",
               c.experiment.id, c.experiment.name, session.hello.agent_id,
               attempt_id);
  active_.emplace(attempt_id, std::move(active));
  hooks_.publish(c.experiment.id);
}

std::set<int64_t> AttemptRunner::NotReadyHere(const std::string& agent_id) {
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

bool AttemptRunner::NotReadyExpired(absl::Time now) const {
  for (const auto& [experiment_id, agents] : not_ready_) {
    for (const auto& [agent_id, until] : agents)
      if (until <= now) return true;
  }
  return false;
}

history::BaselineReference AttemptRunner::BaselineReferenceFor(
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

void AttemptRunner::FillWindow(Active& active) {
  if (!active.history_checked) {
    // Once per attempt, at its first step: the lease is accepted, so the
    // agent's environment (fingerprint, commit) is in the store.
    active.history_checked = true;
    active.driver->SetBaselineReference(BaselineReferenceFor(active));
  }
  AgentSession* s = agents_->Find(active.agent_id);
  const size_t window = static_cast<size_t>(std::max(1, options_.steps_ahead));
  while (!active.driver->finished() && active.driver->steps_out() < window) {
    std::optional<PlannedStep> step = active.driver->Next();
    if (!step) break;  // the plan waits for the steps out
    if (s != nullptr) {
      s->link->SendStep(active.attempt.id, active.attempt.lease_token, *step);
    }
    const int64_t seq = step->seq;
    active.sent.emplace(seq, Active::Sent{std::move(*step), false});
  }
  if (active.driver->finished()) {
    FinishAttempt(active.attempt.id);
    return;
  }
  hooks_.publish_progress(active.experiment.id);
}

void AttemptRunner::FinishAttempt(int64_t attempt_id) {
  auto it = active_.find(attempt_id);
  if (it == active_.end()) return;
  Active& active = it->second;
  ExperimentReport report = active.driver->BuildReport();
  AgentSession* s = agents_->Find(active.agent_id);
  if (s != nullptr) report.host = s->hello.facts.hostname;
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
  if (s != nullptr) {
    s->link->SendRelease(attempt_id, active.attempt.lease_token,
                         report.host_not_ready ? "host not ready"
                         : report.failed       ? "attempt failed"
                                               : "attempt complete");
    agents_->Idle(*s);
  }
  const int64_t experiment_id = active.experiment.id;
  spdlog::info(
      "experiment {} attempt {} finished{}", experiment_id, attempt_id,
      report.failed ? absl::StrCat(" without verdict: ", report.failure) : "");
  active_.erase(it);
  hooks_.publish(experiment_id);
  hooks_.work_queued();
}

void AttemptRunner::LoseAttempt(int64_t attempt_id, const std::string& reason) {
  auto it = active_.find(attempt_id);
  if (it == active_.end()) return;
  const int64_t experiment_id = it->second.experiment.id;
  // Commit the loss before telling the agent (DESIGN.md §6); a store that
  // cannot take it now gets it again until it does, so the attempt does not
  // stay "running" there.
  const absl::Time now = clock_->Now();
  hooks_.store_write(absl::StrCat("end:", attempt_id),
                     absl::StrCat("mark attempt ", attempt_id, " lost"),
                     [this, attempt_id, reason, now] {
                       return store_->EndAttempt(
                           attempt_id, AttemptState::kLost, reason, now);
                     });
  AgentSession* s = agents_->Find(it->second.agent_id);
  if (s != nullptr && s->attempt_id == attempt_id) {
    s->link->SendRelease(attempt_id, it->second.attempt.lease_token, reason);
    agents_->Idle(*s);
  }
  spdlog::warn("attempt {} of experiment {} lost: {}", attempt_id,
               experiment_id, reason);
  {
    absl::MutexLock lock(&mu_);
    ++counters_.attempts_lost;
  }
  active_.erase(it);
  hooks_.publish(experiment_id);
  hooks_.work_queued();
}

int64_t AttemptRunner::Reattach(const std::string& agent_id, int64_t attempt_id,
                                const std::string& token) {
  int64_t experiment_id = 0;
  int64_t kept = 0;
  if (attempt_id != 0) {
    auto it = active_.find(attempt_id);
    if (it != active_.end() && it->second.agent_id == agent_id &&
        it->second.attempt.lease_token == token) {
      it->second.agent_lost_at = absl::InfiniteFuture();
      experiment_id = it->second.experiment.id;
      kept = attempt_id;
    }
  }
  // Any other attempt we still hold for this agent is one it no longer runs
  // (it restarted, or its old stream has not been seen to end yet): lost now,
  // not after the lease timeout.
  std::vector<int64_t> abandoned;
  for (const auto& [id, a] : active_) {
    if (a.agent_id == agent_id && id != kept) abandoned.push_back(id);
  }
  for (int64_t id : abandoned) {
    LoseAttempt(id, absl::StrCat("agent ", agent_id,
                                 " reconnected without it (the agent "
                                 "restarted)"));
  }
  return experiment_id;
}

void AttemptRunner::Resume(int64_t attempt_id, AgentLink& link) {
  auto it = active_.find(attempt_id);
  if (it == active_.end()) return;
  Active& active = it->second;
  if (!active.sent.empty()) {
    // The orders may have been lost with the old stream; the agent
    // de-duplicates by step_seq and resends a result it already has.
    std::vector<int64_t> revoked;
    for (const auto& [seq, sent] : active.sent) {
      if (sent.revoked) {
        revoked.push_back(seq);
        continue;
      }
      link.SendStep(active.attempt.id, active.attempt.lease_token, sent.step);
    }
    // A revocation may have been lost with the old stream too.
    if (!revoked.empty()) {
      link.SendRevoke(active.attempt.id, active.attempt.lease_token, revoked,
                      "the variant was aborted (KILL or REJECT)");
    }
  } else if (!active.lease_accepted) {
    // Its lease reply was lost with the old stream; holding the lease's
    // token is the acceptance.
    active.lease_accepted = true;
    FillWindow(active);
  }
}

void AttemptRunner::AgentGone(int64_t attempt_id, absl::Time when) {
  auto it = active_.find(attempt_id);
  if (it != active_.end()) it->second.agent_lost_at = when;
}

void AttemptRunner::LoseExpired(absl::Time now, absl::Duration lease_timeout) {
  std::vector<int64_t> lost;
  for (auto& [id, a] : active_) {
    if (now - a.agent_lost_at >= lease_timeout) lost.push_back(id);
  }
  for (int64_t id : lost) {
    LoseAttempt(id, absl::StrCat("agent ", active_[id].agent_id,
                                 " was silent for more than ",
                                 absl::FormatDuration(lease_timeout)));
  }
}

void AttemptRunner::Cancelled(int64_t experiment_id,
                              const std::string& reason) {
  for (auto it = active_.begin(); it != active_.end(); ++it) {
    if (it->second.experiment.id != experiment_id) continue;
    if (AgentSession* s = agents_->Find(it->second.agent_id); s != nullptr) {
      s->link->SendRelease(it->first, it->second.attempt.lease_token,
                           absl::StrCat("cancelled: ", reason));
      agents_->Idle(*s);
    }
    active_.erase(it);
    break;
  }
}

void AttemptRunner::RetryDue(
    absl::Time now, const std::function<void(UnstoredResult&)>& repost) {
  if ((unstored_results_.empty() && unfinished_attempts_.empty()) ||
      now < next_store_retry_) {
    return;
  }
  next_store_retry_ = now + kStoreRetryInterval;
  for (UnstoredResult& r : std::exchange(unstored_results_, {})) repost(r);
  for (int64_t attempt_id : std::exchange(unfinished_attempts_, {})) {
    FinishAttempt(attempt_id);
  }
}

std::optional<AttemptRunner::Live> AttemptRunner::LiveOf(
    int64_t experiment_id) const {
  std::optional<Live> live;
  // The last one, should there ever be two.
  for (const auto& [id, a] : active_) {
    if (a.experiment.id != experiment_id) continue;
    live = Live{id, a.experiment.id, a.agent_id, a.driver->progress()};
  }
  return live;
}

std::optional<AttemptRunner::Live> AttemptRunner::LiveOfAttempt(
    int64_t attempt_id) const {
  auto it = active_.find(attempt_id);
  if (it == active_.end()) return std::nullopt;
  const Active& a = it->second;
  return Live{it->first, a.experiment.id, a.agent_id, a.driver->progress()};
}

AttemptRunnerCounters AttemptRunner::counters() {
  absl::MutexLock lock(&mu_);
  return counters_;
}

}  // namespace benchfleet
