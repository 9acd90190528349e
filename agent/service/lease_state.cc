#include "agent/service/lease_state.h"

#include <iterator>

#include "absl/strings/str_cat.h"

namespace benchfleet {

LeaseState::LeaseState(absl::Duration lease_timeout, absl::Time now)
    : lease_timeout_(lease_timeout), disconnected_since_(now) {}

void LeaseState::Disconnected(absl::Time now) {
  if (connected_) disconnected_since_ = now;
  connected_ = false;
}

bool LeaseState::CutOffTooLong(absl::Time now) const {
  return attempt_ != 0 && !connected_ &&
         now - disconnected_since_ > lease_timeout_;
}

LeaseState::LeaseDecision LeaseState::OnLease(const v1::Lease& lease) {
  LeaseDecision d;
  if (attempt_ != 0 && attempt_ != lease.attempt_id()) {
    d.kind = LeaseDecision::kReject;
    d.reason = absl::StrCat("this agent already holds the lease of attempt ",
                            attempt_, "; one lease at a time");
    return d;
  }
  const bool repeated =
      attempt_ == lease.attempt_id() && token_ == lease.lease_token();
  if (attempt_ != lease.attempt_id()) started_ = false;
  attempt_ = lease.attempt_id();
  token_ = lease.lease_token();
  gates_ = lease.gates();
  if (repeated && lease_env_) {
    d.kind = LeaseDecision::kAcceptWithEnv;
    d.environment = *lease_env_;
    return d;
  }
  if (repeated &&
      (lease_to_accept_ || recording_env_for_ == lease.attempt_id())) {
    d.kind = LeaseDecision::kAwaitEnvironment;
    return d;
  }
  lease_env_.reset();
  lease_to_accept_ = lease;
  d.kind = LeaseDecision::kRecordEnvironment;
  return d;
}

LeaseState::Dropped LeaseState::DropLease(absl::Time now) {
  Dropped d;
  d.attempt_id = attempt_;
  d.stop_running = running_.first == attempt_;
  d.stop_recording = recording_env_for_ == attempt_;
  lease_to_accept_.reset();
  lease_env_.reset();
  pending_.clear();
  for (auto it = unacked_.begin(); it != unacked_.end();) {
    it = it->first.first == attempt_ ? unacked_.erase(it) : std::next(it);
  }
  for (auto it = done_.begin(); it != done_.end();) {
    it = it->first == attempt_ ? done_.erase(it) : std::next(it);
  }
  attempt_ = 0;
  token_.clear();
  started_ = false;
  last_attempt_end_ = now;
  return d;
}

LeaseState::StepDecision LeaseState::OnStep(const v1::StepOrder& order,
                                            v1::StepResult* resend) {
  const Key key{order.attempt_id(), order.step_seq()};
  if (order.attempt_id() != attempt_ || order.lease_token() != token_)
    return StepDecision::kNotLeased;
  if (done_.contains(key)) {
    auto it = unacked_.find(key);
    if (it == unacked_.end()) return StepDecision::kKnown;
    *resend = it->second;  // the controller lost it
    return StepDecision::kResend;
  }
  if (running_ == key) return StepDecision::kKnown;
  for (const v1::StepOrder& p : pending_) {
    if (p.step_seq() == order.step_seq() &&
        p.attempt_id() == order.attempt_id())
      return StepDecision::kKnown;
  }
  pending_.push_back(order);
  return StepDecision::kQueued;
}

bool LeaseState::OnRevoke(const v1::Revoke& revoke) {
  if (revoke.attempt_id() != attempt_ || revoke.lease_token() != token_)
    return false;
  const std::set<int64_t> seqs(revoke.step_seq().begin(),
                               revoke.step_seq().end());
  std::erase_if(pending_, [&](const v1::StepOrder& o) {
    return o.attempt_id() == revoke.attempt_id() && seqs.contains(o.step_seq());
  });
  if (running_.first == revoke.attempt_id() && seqs.contains(running_.second)) {
    running_revoked_ = true;
    return true;
  }
  return false;
}

std::vector<v1::StepResult> LeaseState::Unacked() const {
  std::vector<v1::StepResult> out;
  out.reserve(unacked_.size());
  for (const auto& [key, result] : unacked_) out.push_back(result);
  return out;
}

LeaseState::Work LeaseState::TakeWork() {
  Work w;
  if (lease_to_accept_) {
    w.lease = std::move(*lease_to_accept_);
    lease_to_accept_.reset();
    recording_env_for_ = w.lease->attempt_id();
    return w;
  }
  w.step = std::move(pending_.front());
  pending_.pop_front();
  running_ = {w.step.attempt_id(), w.step.step_seq()};
  running_revoked_ = false;
  return w;
}

bool LeaseState::EnvironmentRecorded(
    const v1::Lease& lease, const v1::AttemptEnvironment& environment) {
  recording_env_for_ = 0;
  if (attempt_ != lease.attempt_id() || token_ != lease.lease_token())
    return false;
  lease_env_ = environment;
  return true;
}

bool LeaseState::StartAttemptIfFirst() {
  const bool first = !started_;
  started_ = true;
  return first;
}

bool LeaseState::StepFinished(const v1::StepOrder& order,
                              const v1::StepResult& result) {
  const Key key{order.attempt_id(), order.step_seq()};
  running_ = {0, 0};
  // A result for a lease dropped meanwhile would be stale; one for a step the
  // controller revoked while it ran is not wanted.
  if (attempt_ != order.attempt_id() || token_ != order.lease_token() ||
      running_revoked_)
    return false;
  if (result.host_not_ready()) {
    // The attempt ends here: the orders queued behind this one would only wait
    // for the same gates again.
    std::erase_if(pending_, [&](const v1::StepOrder& o) {
      return o.attempt_id() == order.attempt_id();
    });
  }
  done_.insert(key);
  unacked_[key] = result;
  return true;
}

}  // namespace benchfleet
