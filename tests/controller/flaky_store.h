// FlakyStore: a Store for tests that passes every call to a real store, except
// that EndAttempt and SetAgentState fail with Unavailable (a database that is
// down or busy) as many times as the test asks, without reaching the real
// store. Used by the dispatcher tests of store-write retries. Thread-safe as
// far as the wrapped store is; the failure counts are atomic.
#ifndef BENCHFLEET_TESTS_CONTROLLER_FLAKY_STORE_H_
#define BENCHFLEET_TESTS_CONTROLLER_FLAKY_STORE_H_

#include <atomic>
#include <memory>
#include <utility>

#include "controller/store/store.h"

namespace benchfleet {

class FlakyStore : public Store {
 public:
  explicit FlakyStore(std::unique_ptr<Store> real) : real_(std::move(real)) {}

  // The next `n` calls of each fail with Unavailable.
  void FailEndAttempt(int n) { end_attempt_failures_ = n; }
  void FailSetAgentState(int n) { set_agent_state_failures_ = n; }
  // Failed calls so far.
  int failed_calls() const { return failed_calls_.load(); }

  absl::Status EndAttempt(int64_t attempt_id, AttemptState state,
                          const std::string& reason, absl::Time now) override {
    if (TakeFailure(end_attempt_failures_))
      return absl::UnavailableError("the database is down (FlakyStore)");
    return real_->EndAttempt(attempt_id, state, reason, now);
  }
  absl::Status SetAgentState(const std::string& agent_id, AgentState state,
                             absl::Time now) override {
    if (TakeFailure(set_agent_state_failures_))
      return absl::UnavailableError("the database is down (FlakyStore)");
    return real_->SetAgentState(agent_id, state, now);
  }

  // The rest passes through.
  absl::StatusOr<ExperimentRecord> CreateExperiment(
      const ExperimentRecord& record) override {
    return real_->CreateExperiment(record);
  }
  absl::StatusOr<ExperimentRecord> GetExperiment(int64_t id) override {
    return real_->GetExperiment(id);
  }
  absl::StatusOr<std::vector<ExperimentRecord>> ListExperiments(
      int limit) override {
    return real_->ListExperiments(limit);
  }
  absl::StatusOr<std::optional<Claim>> ClaimNextExperiment(
      const std::string& agent_id,
      const std::map<std::string, std::string>& agent_labels,
      const std::string& lease_token, uint64_t seed,
      const std::set<int64_t>& skip_experiment_ids, absl::Time now) override {
    return real_->ClaimNextExperiment(agent_id, agent_labels, lease_token, seed,
                                      skip_experiment_ids, now);
  }
  absl::StatusOr<AttemptRecord> GetAttempt(int64_t attempt_id) override {
    return real_->GetAttempt(attempt_id);
  }
  absl::StatusOr<std::vector<AttemptRecord>> ListAttempts(
      int64_t experiment_id) override {
    return real_->ListAttempts(experiment_id);
  }
  absl::StatusOr<std::vector<AttemptRecord>> ListRunningAttempts() override {
    return real_->ListRunningAttempts();
  }
  absl::Status SetAttemptEnvironment(int64_t attempt_id,
                                     const std::string& env_json) override {
    return real_->SetAttemptEnvironment(attempt_id, env_json);
  }
  absl::StatusOr<RecordOutcome> RecordStepResult(
      const StepResultRecord& result, const std::string& lease_token) override {
    return real_->RecordStepResult(result, lease_token);
  }
  absl::StatusOr<std::vector<StepResultRecord>> ListStepResults(
      int64_t attempt_id) override {
    return real_->ListStepResults(attempt_id);
  }
  absl::Status CompleteExperiment(int64_t attempt_id,
                                  const std::string& lease_token,
                                  const std::string& report_json,
                                  const std::string& report_text,
                                  const std::vector<VerdictRecord>& verdicts,
                                  absl::Time now) override {
    return real_->CompleteExperiment(attempt_id, lease_token, report_json,
                                     report_text, verdicts, now);
  }
  absl::Status CancelExperiment(int64_t id, const std::string& reason,
                                absl::Time now) override {
    return real_->CancelExperiment(id, reason, now);
  }
  absl::StatusOr<std::vector<VerdictRecord>> ListVerdicts(
      int64_t experiment_id) override {
    return real_->ListVerdicts(experiment_id);
  }
  absl::StatusOr<std::vector<HistoryEntry>> ListHistory(
      const HistoryQuery& q) override {
    return real_->ListHistory(q);
  }
  absl::StatusOr<ImportCounts> ImportHistory(
      const std::vector<HistoryEntry>& entries) override {
    return real_->ImportHistory(entries);
  }
  absl::Status RecordSamples(
      const std::vector<SampleRecord>& samples) override {
    return real_->RecordSamples(samples);
  }
  absl::StatusOr<std::vector<SampleRecord>> ListSamples(
      int64_t attempt_id) override {
    return real_->ListSamples(attempt_id);
  }
  absl::StatusOr<int64_t> DeleteSamplesBefore(absl::Time cutoff) override {
    return real_->DeleteSamplesBefore(cutoff);
  }
  absl::Status UpsertAgent(const AgentRecord& agent) override {
    return real_->UpsertAgent(agent);
  }
  absl::Status SetAgentCordoned(const std::string& agent_id,
                                bool cordoned) override {
    return real_->SetAgentCordoned(agent_id, cordoned);
  }
  absl::StatusOr<AgentRecord> GetAgent(const std::string& agent_id) override {
    return real_->GetAgent(agent_id);
  }
  absl::StatusOr<std::vector<AgentRecord>> ListAgents() override {
    return real_->ListAgents();
  }
  absl::StatusOr<TokenRecord> CreateToken(const TokenRecord& token) override {
    return real_->CreateToken(token);
  }
  absl::StatusOr<std::optional<TokenRecord>> FindToken(
      const std::string& sha256_hex) override {
    return real_->FindToken(sha256_hex);
  }
  absl::StatusOr<std::vector<TokenRecord>> ListTokens() override {
    return real_->ListTokens();
  }
  absl::StatusOr<TokenRecord> RevokeToken(int64_t id,
                                          absl::Time when) override {
    return real_->RevokeToken(id, when);
  }
  absl::Status RecordExperimentSources(
      int64_t experiment_id,
      const std::vector<VariantSourceRecord>& sources) override {
    return real_->RecordExperimentSources(experiment_id, sources);
  }
  absl::StatusOr<std::vector<VariantSourceRecord>> ListExperimentSources(
      int64_t experiment_id) override {
    return real_->ListExperimentSources(experiment_id);
  }

 private:
  bool TakeFailure(std::atomic<int>& left) {
    int n = left.load();
    while (n > 0) {
      if (left.compare_exchange_weak(n, n - 1)) {
        ++failed_calls_;
        return true;
      }
    }
    return false;
  }

  std::unique_ptr<Store> real_;
  std::atomic<int> end_attempt_failures_{0};
  std::atomic<int> set_agent_state_failures_{0};
  std::atomic<int> failed_calls_{0};
};

}  // namespace benchfleet

#endif  // BENCHFLEET_TESTS_CONTROLLER_FLAKY_STORE_H_
