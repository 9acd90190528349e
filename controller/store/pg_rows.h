// The PostgreSQL store's rows (internal to the pg_store library): the column
// lists of each table, the readers that turn a row into a record (they and
// the column lists must agree), the loads by id, and the statements that
// both pg_store.cc and pg_store_history.cc run. Pure functions and
// constants; a Txn belongs to one call at a time.
#ifndef BENCHFLEET_CONTROLLER_STORE_PG_ROWS_H_
#define BENCHFLEET_CONTROLLER_STORE_PG_ROWS_H_

#include <cstdint>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controller/store/pg_conn.h"
#include "controller/store/store.h"

namespace benchfleet {
namespace pg_internal {

inline int64_t I64(const pqxx::field& f) { return f.as<int64_t>(); }
inline double F64(const pqxx::field& f) { return f.as<double>(); }
inline std::string Str(const pqxx::field& f) { return f.as<std::string>(); }
inline absl::Time Time(const pqxx::field& f) {
  return FromMicros(f.as<int64_t>());
}

// The stores read and write the latest schema only: Open migrates every older
// database first (migrations.h).
#define BF_EXPERIMENT_COLUMNS                                               \
  "id, number, name, campaign, state, state_reason, spec_yaml, spec_path, " \
  "workdir, required_labels_json, attempts, max_attempts, submitted_by, "   \
  "created_at, updated_at, report_json, report_text, idea, origin, "        \
  "discarded_before, bundle_digest"
#define BF_ATTEMPT_COLUMNS                                          \
  "id, experiment_id, agent_id, lease_token, state, seed, reason, " \
  "environment_json, started_at, ended_at"
#define BF_STEP_RESULT_COLUMNS                                             \
  "attempt_id, step_seq, kind, variant, input, wall_ns, user_ns, sys_ns, " \
  "max_rss_bytes, exit_code, term_signal, timed_out, output_digest, "      \
  "metrics_json, error, finished_at, host_json, host_flags, gate_wait_ns"
#define BF_VERDICT_COLUMNS                                                 \
  "experiment_id, attempt_id, variant, verdict, reason, relative_change, " \
  "detail_json"
#define BF_AGENT_COLUMNS \
  "id, hostname, labels_json, facts_json, state, cordoned, last_seen"
#define BF_SAMPLE_COLUMNS                                               \
  "attempt_id, step_seq, agent_id, taken_at, cpu_util, load1, "         \
  "mem_available_bytes, min_freq_mhz, max_cpu_temp_c, max_gpu_temp_c, " \
  "gpu_util, throttle_events, competing_cpu, detail_json"

absl::StatusOr<ExperimentRecord> ReadExperiment(const pqxx::row& row,
                                                const std::string& display);
absl::StatusOr<AttemptRecord> ReadAttempt(const pqxx::row& row,
                                          const std::string& display);
absl::StatusOr<StepResultRecord> ReadStepResult(const pqxx::row& row,
                                                const std::string& display);
VerdictRecord ReadVerdict(const pqxx::row& row);
absl::StatusOr<AgentRecord> ReadAgent(const pqxx::row& row,
                                      const std::string& display);
SampleRecord ReadSample(const pqxx::row& row);

// NotFound when no row has that id.
absl::StatusOr<ExperimentRecord> LoadExperiment(Txn& txn, int64_t id,
                                                const std::string& display);
absl::StatusOr<AttemptRecord> LoadAttempt(Txn& txn, int64_t id,
                                          const std::string& display);
absl::StatusOr<std::vector<AttemptRecord>> ReadAttempts(
    const pqxx::result& r, const std::string& display);

// Advisory lock class of a campaign's numbering (two-key form).
inline constexpr int32_t kCampaignLockClass = 0x62660001;
inline constexpr Query kCampaignLock{
    "bf_campaign_lock", "SELECT pg_advisory_xact_lock($1, hashtext($2))"};
inline constexpr Query kNextNumber{
    "bf_next_number",
    "SELECT COALESCE(MAX(number), 0) + 1 FROM experiments "
    "WHERE hashtextextended(campaign, 0) = hashtextextended($1, 0) "
    "AND campaign = $1"};
inline constexpr Query kInsertVerdict{
    "bf_insert_verdict",
    "INSERT INTO verdicts (experiment_id, attempt_id, variant, verdict, "
    "reason, relative_change, detail_json) VALUES ($1, $2, $3, $4, $5, $6, "
    "$7)"};
}  // namespace pg_internal
}  // namespace benchfleet

#endif  // BENCHFLEET_CONTROLLER_STORE_PG_ROWS_H_
