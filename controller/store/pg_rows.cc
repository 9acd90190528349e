#include "controller/store/pg_rows.h"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/status_macros.h"
#include "controller/store/json_columns.h"

namespace benchfleet {
namespace pg_internal {
namespace {

constexpr Query kGetExperiment{"bf_get_experiment",
                               "SELECT " BF_EXPERIMENT_COLUMNS
                               " FROM experiments WHERE id = $1"};
constexpr Query kGetAttempt{"bf_get_attempt", "SELECT " BF_ATTEMPT_COLUMNS
                                              " FROM attempts WHERE id = $1"};
}  // namespace

absl::StatusOr<ExperimentRecord> ReadExperiment(const pqxx::row& row,
                                                const std::string& display) {
  ExperimentRecord r;
  r.id = I64(row["id"]);
  r.number = I64(row["number"]);
  r.name = Str(row["name"]);
  r.campaign = Str(row["campaign"]);
  const std::string state = Str(row["state"]);
  if (!ParseExperimentState(state, &r.state)) {
    return absl::DataLossError("PostgreSQL store " + display + ": experiment " +
                               std::to_string(r.id) + " has unknown state \"" +
                               state + "\"");
  }
  r.state_reason = Str(row["state_reason"]);
  r.spec_yaml = Str(row["spec_yaml"]);
  r.spec_path = Str(row["spec_path"]);
  r.workdir = Str(row["workdir"]);
  ASSIGN_OR_RETURN(
      r.required_labels,
      LabelsFromJson(Str(row["required_labels_json"]),
                     "required labels of experiment " + std::to_string(r.id),
                     "PostgreSQL store " + display));
  r.attempts = static_cast<int>(I64(row["attempts"]));
  r.max_attempts = static_cast<int>(I64(row["max_attempts"]));
  r.submitted_by = Str(row["submitted_by"]);
  r.created_at = Time(row["created_at"]);
  r.updated_at = Time(row["updated_at"]);
  r.report_json = Str(row["report_json"]);
  r.report_text = Str(row["report_text"]);
  r.idea = Str(row["idea"]);
  r.origin = row["origin"].is_null() ? std::string() : Str(row["origin"]);
  r.discarded_before = Str(row["discarded_before"]);
  r.bundle_digest = Str(row["bundle_digest"]);
  return r;
}

absl::StatusOr<AttemptRecord> ReadAttempt(const pqxx::row& row,
                                          const std::string& display) {
  AttemptRecord r;
  r.id = I64(row["id"]);
  r.experiment_id = I64(row["experiment_id"]);
  r.agent_id = Str(row["agent_id"]);
  r.lease_token = Str(row["lease_token"]);
  const std::string state = Str(row["state"]);
  if (!ParseAttemptState(state, &r.state)) {
    return absl::DataLossError("PostgreSQL store " + display + ": attempt " +
                               std::to_string(r.id) + " has unknown state \"" +
                               state + "\"");
  }
  // The seed is stored as the int64 with the same bits.
  r.seed = static_cast<uint64_t>(I64(row["seed"]));
  r.reason = Str(row["reason"]);
  r.environment_json = Str(row["environment_json"]);
  r.started_at = Time(row["started_at"]);
  r.ended_at =
      row["ended_at"].is_null() ? absl::UnixEpoch() : Time(row["ended_at"]);
  return r;
}

absl::StatusOr<StepResultRecord> ReadStepResult(const pqxx::row& row,
                                                const std::string& display) {
  StepResultRecord r;
  r.attempt_id = I64(row["attempt_id"]);
  r.step_seq = I64(row["step_seq"]);
  r.kind = Str(row["kind"]);
  r.variant = Str(row["variant"]);
  r.input = Str(row["input"]);
  r.wall_ns = I64(row["wall_ns"]);
  r.user_ns = I64(row["user_ns"]);
  r.sys_ns = I64(row["sys_ns"]);
  r.max_rss_bytes = I64(row["max_rss_bytes"]);
  r.exit_code = static_cast<int>(I64(row["exit_code"]));
  r.term_signal = static_cast<int>(I64(row["term_signal"]));
  r.timed_out = I64(row["timed_out"]) != 0;
  r.output_digest = Str(row["output_digest"]);
  r.metrics_json = Str(row["metrics_json"]);
  r.error = Str(row["error"]);
  r.finished_at = Time(row["finished_at"]);
  r.host_json = Str(row["host_json"]);
  ASSIGN_OR_RETURN(
      r.host_flags,
      HostFlagsFromJson(Str(row["host_flags"]),
                        "host flags of step " + std::to_string(r.step_seq) +
                            " of attempt " + std::to_string(r.attempt_id),
                        "PostgreSQL store " + display));
  r.gate_wait_ns = I64(row["gate_wait_ns"]);
  return r;
}

VerdictRecord ReadVerdict(const pqxx::row& row) {
  VerdictRecord r;
  r.experiment_id = I64(row["experiment_id"]);
  r.attempt_id = I64(row["attempt_id"]);
  r.variant = Str(row["variant"]);
  r.verdict = Str(row["verdict"]);
  r.reason = Str(row["reason"]);
  r.change = F64(row["relative_change"]);
  r.detail_json = Str(row["detail_json"]);
  return r;
}

absl::StatusOr<AgentRecord> ReadAgent(const pqxx::row& row,
                                      const std::string& display) {
  AgentRecord r;
  r.id = Str(row["id"]);
  r.hostname = Str(row["hostname"]);
  ASSIGN_OR_RETURN(r.labels, LabelsFromJson(Str(row["labels_json"]),
                                            "labels of agent " + r.id,
                                            "PostgreSQL store " + display));
  r.facts_json = Str(row["facts_json"]);
  const std::string state = Str(row["state"]);
  if (!ParseAgentState(state, &r.state)) {
    return absl::DataLossError("PostgreSQL store " + display + ": agent " +
                               r.id + " has unknown state \"" + state + "\"");
  }
  r.cordoned = I64(row["cordoned"]) != 0;
  r.last_seen = Time(row["last_seen"]);
  return r;
}

SampleRecord ReadSample(const pqxx::row& row) {
  SampleRecord r;
  r.attempt_id = I64(row["attempt_id"]);
  r.step_seq = I64(row["step_seq"]);
  r.agent_id = Str(row["agent_id"]);
  r.taken_at = Time(row["taken_at"]);
  r.cpu_util = F64(row["cpu_util"]);
  r.load1 = F64(row["load1"]);
  r.mem_available_bytes = F64(row["mem_available_bytes"]);
  r.min_freq_mhz = F64(row["min_freq_mhz"]);
  r.max_cpu_temp_c = F64(row["max_cpu_temp_c"]);
  r.max_gpu_temp_c = F64(row["max_gpu_temp_c"]);
  r.gpu_util = F64(row["gpu_util"]);
  r.throttle_events = I64(row["throttle_events"]);
  r.competing_cpu = F64(row["competing_cpu"]);
  r.detail_json = Str(row["detail_json"]);
  return r;
}

absl::StatusOr<ExperimentRecord> LoadExperiment(Txn& txn, int64_t id,
                                                const std::string& display) {
  const pqxx::result r = txn.Exec(kGetExperiment, id);
  if (r.empty()) {
    return absl::NotFoundError("experiment " + std::to_string(id) +
                               " not found");
  }
  return ReadExperiment(r[0], display);
}

absl::StatusOr<AttemptRecord> LoadAttempt(Txn& txn, int64_t id,
                                          const std::string& display) {
  const pqxx::result r = txn.Exec(kGetAttempt, id);
  if (r.empty()) {
    return absl::NotFoundError("attempt " + std::to_string(id) + " not found");
  }
  return ReadAttempt(r[0], display);
}

absl::StatusOr<std::vector<AttemptRecord>> ReadAttempts(
    const pqxx::result& r, const std::string& display) {
  std::vector<AttemptRecord> out;
  out.reserve(r.size());
  for (const pqxx::row& row : r) {
    ASSIGN_OR_RETURN(AttemptRecord attempt, ReadAttempt(row, display));
    out.push_back(std::move(attempt));
  }
  return out;
}

}  // namespace pg_internal
}  // namespace benchfleet
