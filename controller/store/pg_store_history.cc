// PgStore (pg_store.h): history (ListHistory, ImportHistory), verdicts,
// samples (streamed in COPY's binary format) and agents.
#include <libpq-fe.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "controller/store/history_import.h"
#include "controller/store/json_columns.h"
#include "controller/store/migrations.h"
#include "controller/store/pg_conn.h"
#include "controller/store/pg_rows.h"
#include "controller/store/pg_store.h"
#include "controller/store/store_checks.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace benchfleet {

using pg_internal::F64;
using pg_internal::FromMicros;
using pg_internal::I64;
using pg_internal::InvalidText;
using pg_internal::kCampaignLock;
using pg_internal::kCampaignLockClass;
using pg_internal::kInsertVerdict;
using pg_internal::kNextNumber;
using pg_internal::LoadAttempt;
using pg_internal::LoadExperiment;
using pg_internal::OneLine;
using pg_internal::Query;
using pg_internal::ReadAgent;
using pg_internal::ReadAttempt;
using pg_internal::ReadAttempts;
using pg_internal::ReadExperiment;
using pg_internal::ReadSample;
using pg_internal::ReadStepResult;
using pg_internal::ReadVerdict;
using pg_internal::Str;
using pg_internal::Time;
using pg_internal::ToMicros;
using pg_internal::Txn;

namespace {

// The completing attempts and the verdicts of many experiments at once
// (ListHistory): $1 is a bigint[] literal of experiment ids.
constexpr Query kDoneAttempts{
    "bf_done_attempts",
    "SELECT DISTINCT ON (experiment_id) " BF_ATTEMPT_COLUMNS
    " FROM attempts WHERE experiment_id = ANY($1::bigint[]) AND state = $2 "
    "ORDER BY experiment_id, id DESC"};
constexpr Query kVerdictsOf{"bf_verdicts_of",
                            "SELECT " BF_VERDICT_COLUMNS
                            " FROM verdicts WHERE experiment_id = "
                            "ANY($1::bigint[]) ORDER BY experiment_id, id"};
constexpr Query kOriginPresent{"bf_origin_present",
                               "SELECT 1 FROM experiments WHERE origin = $1"};
constexpr Query kNumberTaken{
    "bf_number_taken",
    "SELECT 1 FROM experiments "
    "WHERE hashtextextended(campaign, 0) = hashtextextended($1, 0) "
    "AND campaign = $1 AND number = $2"};
constexpr Query kImportExperiment{
    "bf_import_experiment",
    "INSERT INTO experiments (number, name, campaign, state, state_reason, "
    "spec_yaml, spec_path, workdir, required_labels_json, attempts, "
    "max_attempts, submitted_by, created_at, updated_at, report_json, "
    "report_text, idea, origin, discarded_before) VALUES ($1, $2, $3, $4, $5, "
    "$6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) "
    "RETURNING id"};
constexpr Query kImportAttempt{
    "bf_import_attempt",
    "INSERT INTO attempts (experiment_id, agent_id, lease_token, state, seed, "
    "reason, environment_json, started_at, ended_at) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id"};

// ListHistory's statement for the filters that are set. Each takes the same
// parameters: $1 state, $2 name, $3 campaign, $4 idea, $5 since, $6 limit;
// name and idea are matched through their hash indexes (migration 6). Newest
// first, so that LIMIT keeps the newest.
const Query& HistoryQueryFor(bool name, bool campaign, bool idea) {
  struct Variants {
    std::string names[8];
    std::string sql[8];
    Query queries[8];
    Variants() {
      for (int mask = 0; mask < 8; ++mask) {
        std::string sql =
            "SELECT " BF_EXPERIMENT_COLUMNS
            " FROM experiments WHERE state = $1 AND created_at >= $5";
        if (mask & 1) {
          sql +=
              " AND hashtextextended(name, 0) = hashtextextended($2, 0)"
              " AND name = $2";
        } else {
          sql += " AND $2::text IS NOT NULL";  // keeps $2 typed
        }
        if (mask & 2) {
          sql += " AND campaign = $3";
        } else {
          sql += " AND $3::text IS NOT NULL";
        }
        if (mask & 4) {
          sql +=
              " AND hashtextextended(idea, 0) = hashtextextended($4, 0)"
              " AND idea = $4";
        } else {
          sql += " AND $4::text IS NOT NULL";
        }
        sql += " ORDER BY created_at DESC, id DESC LIMIT $6";
        this->sql[mask] = std::move(sql);
        names[mask] = "bf_history_" + std::to_string(mask);
        queries[mask] = Query{names[mask].c_str(), this->sql[mask].c_str()};
      }
    }
  };
  static const Variants* const variants = new Variants();
  return variants
      ->queries[(name ? 1 : 0) | (campaign ? 2 : 0) | (idea ? 4 : 0)];
}

constexpr Query kListVerdicts{"bf_list_verdicts",
                              "SELECT " BF_VERDICT_COLUMNS
                              " FROM verdicts WHERE experiment_id = $1 "
                              "ORDER BY id"};

constexpr Query kListSamples{"bf_list_samples",
                             "SELECT " BF_SAMPLE_COLUMNS
                             " FROM samples WHERE attempt_id = $1 "
                             "ORDER BY taken_at, step_seq"};
constexpr Query kDeleteSamples{"bf_delete_samples",
                               "DELETE FROM samples WHERE taken_at < $1"};

// Agents are keyed by a hash of their id (migration 4); each statement also
// compares the id itself. `cordoned` is an operator's decision: a
// re-registering agent cannot clear it. When another agent's id has the same
// hash, the WHERE clause makes the upsert change nothing (0 rows).
#define BF_AGENT_ID_IS(param) \
  "hashtextextended(id, 0) = hashtextextended(" param ", 0) AND id = " param
constexpr Query kUpsertAgent{
    "bf_upsert_agent",
    "INSERT INTO agents (" BF_AGENT_COLUMNS
    ") VALUES ($1, $2, $3, $4, $5, $6, $7) "
    "ON CONFLICT ((hashtextextended(id, 0))) DO UPDATE SET "
    "hostname = excluded.hostname, labels_json = excluded.labels_json, "
    "facts_json = excluded.facts_json, state = excluded.state, "
    "last_seen = excluded.last_seen, "
    "cordoned = CASE WHEN excluded.cordoned <> 0 THEN 1 "
    "ELSE agents.cordoned END WHERE agents.id = excluded.id"};
constexpr Query kSetAgentStateSeen{
    "bf_set_agent_state_seen",
    "UPDATE agents SET state = $1, last_seen = $2 WHERE " BF_AGENT_ID_IS("$3")};
constexpr Query kSetAgentState{
    "bf_set_agent_state",
    "UPDATE agents SET state = $1 WHERE " BF_AGENT_ID_IS("$2")};
constexpr Query kSetAgentCordoned{
    "bf_set_agent_cordoned",
    "UPDATE agents SET cordoned = $1 WHERE " BF_AGENT_ID_IS("$2")};
constexpr Query kGetAgent{"bf_get_agent",
                          "SELECT " BF_AGENT_COLUMNS
                          " FROM agents WHERE " BF_AGENT_ID_IS("$1")};
constexpr Query kListAgents{
    "bf_list_agents", "SELECT " BF_AGENT_COLUMNS " FROM agents ORDER BY id"};

// ---- COPY in binary format ----
// RecordSamples streams rows in COPY's binary format: the server then copies
// numbers instead of parsing their text (a quarter of its work per row on the
// ingest path; docs/perf/pg-ingest.md), and doubles, NaN and infinities
// included, arrive bit for bit. The column types of `samples` must match the
// encoders below (BIGINT, DOUBLE PRECISION, TEXT).

void PutBigEndian(std::string& out, uint64_t value, int bytes) {
  for (int shift = 8 * (bytes - 1); shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((value >> shift) & 0xff));
  }
}
void PutInt64Field(std::string& out, int64_t value) {
  PutBigEndian(out, 8, 4);  // field length
  PutBigEndian(out, static_cast<uint64_t>(value), 8);
}
void PutDoubleField(std::string& out, double value) {
  uint64_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  PutBigEndian(out, 8, 4);
  PutBigEndian(out, bits, 8);
}
void PutTextField(std::string& out, std::string_view text) {
  PutBigEndian(out, text.size(), 4);
  out.append(text);
}

constexpr int kSampleFields = 14;

void PutSampleRow(std::string& out, const SampleRecord& s) {
  PutBigEndian(out, kSampleFields, 2);
  PutInt64Field(out, s.attempt_id);
  PutInt64Field(out, s.step_seq);
  PutTextField(out, s.agent_id);
  PutInt64Field(out, ToMicros(s.taken_at));
  for (double value :
       {s.cpu_util, s.load1, s.mem_available_bytes, s.min_freq_mhz,
        s.max_cpu_temp_c, s.max_gpu_temp_c, s.gpu_util}) {
    PutDoubleField(out, value);
  }
  PutInt64Field(out, s.throttle_events);
  PutDoubleField(out, s.competing_cpu);
  PutTextField(out, s.detail_json);
}

// libpq's last error, as the exception Transact knows how to handle.
[[noreturn]] void ThrowCopyError(PGconn* pg, std::string_view step) {
  const std::string message =
      std::string(step) + ": " + (pg != nullptr ? PQerrorMessage(pg) : "");
  if (pg == nullptr || PQstatus(pg) == CONNECTION_BAD) {
    throw pqxx::broken_connection(message);
  }
  throw pqxx::failure(message);
}

// Streams `samples` in COPY's binary format (header, rows, trailer) into the
// COPY that `pg` has just started, then ends it and reads its outcome. Rows
// are formatted a chunk at a time and each chunk is sent at once, so the
// server reads one chunk while the next is being formatted. Throws
// pqxx::sql_error with the server's SQLSTATE when the server refuses the data,
// pqxx::broken_connection when the connection breaks.
void StreamSamples(PGconn* pg, const std::vector<SampleRecord>& samples) {
  if (pg == nullptr) ThrowCopyError(pg, "COPY samples");
  constexpr size_t kChunkBytes = size_t{32} << 10;
  std::string chunk;
  chunk.reserve(kChunkBytes + 4096);
  auto send = [&] {
    if (PQputCopyData(pg, chunk.data(), static_cast<int>(chunk.size())) != 1) {
      ThrowCopyError(pg, "sending COPY data");
    }
    chunk.clear();
  };
  // Signature, flags, header extension length.
  chunk.append("PGCOPY\n\xff\r\n\0", 11);
  PutBigEndian(chunk, 0, 4);
  PutBigEndian(chunk, 0, 4);
  for (const SampleRecord& s : samples) {
    PutSampleRow(chunk, s);
    if (chunk.size() >= kChunkBytes) send();
  }
  PutBigEndian(chunk, 0xffff, 2);  // trailer: a field count of -1
  send();
  if (PQputCopyEnd(pg, nullptr) != 1) ThrowCopyError(pg, "ending COPY");
  std::optional<pqxx::sql_error> refused;
  bool connection_lost = false;
  std::string lost_message;
  for (PGresult* result = PQgetResult(pg); result != nullptr;
       result = PQgetResult(pg)) {
    if (PQresultStatus(result) != PGRES_COMMAND_OK && !refused) {
      const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
      refused.emplace(PQresultErrorMessage(result), "COPY samples", state);
      if (PQstatus(pg) == CONNECTION_BAD) {
        connection_lost = true;
        lost_message = PQresultErrorMessage(result);
      }
    }
    PQclear(result);
  }
  if (connection_lost) throw pqxx::broken_connection(lost_message);
  if (refused) throw *refused;
}

}  // namespace

// ---- History ----

absl::StatusOr<std::vector<HistoryEntry>> PgStore::ListHistory(
    const HistoryQuery& q) {
  const Query& query =
      HistoryQueryFor(!q.name.empty(), !q.campaign.empty(), !q.idea.empty());
  const int64_t since = q.since == absl::InfinitePast()
                            ? std::numeric_limits<int64_t>::min()
                            : ToMicros(q.since);
  const int64_t limit =
      q.limit > 0 ? q.limit : std::numeric_limits<int64_t>::max();
  const char* done = ExperimentStateName(ExperimentState::kDone);
  std::vector<HistoryEntry> out;
  RETURN_IF_ERROR(Transact(
      "listing history", TxnKind::kRead, [&](Txn& txn) -> absl::Status {
        out.clear();
        // Absent filters are bound as '' and not used by the statement, so
        // every variant takes the same parameters.
        const pqxx::result r =
            txn.Exec(query, done, q.name, q.campaign, q.idea, since, limit);
        out.reserve(r.size());
        for (const pqxx::row& row : r) {
          HistoryEntry entry;
          ASSIGN_OR_RETURN(entry.experiment,
                           ReadExperiment(row, display_name_));
          out.push_back(std::move(entry));
        }
        std::reverse(out.begin(), out.end());
        if (out.empty()) return absl::OkStatus();
        // Two more statements for all entries, not two per entry.
        std::map<int64_t, HistoryEntry*> by_id;
        std::string ids = "{";
        for (HistoryEntry& entry : out) {
          if (ids.size() > 1) ids += ',';
          ids += std::to_string(entry.experiment.id);
          by_id[entry.experiment.id] = &entry;
        }
        ids += '}';
        std::set<int64_t> with_attempt;
        for (const pqxx::row& row : txn.Exec(
                 kDoneAttempts, ids, AttemptStateName(AttemptState::kDone))) {
          ASSIGN_OR_RETURN(AttemptRecord attempt,
                           ReadAttempt(row, display_name_));
          with_attempt.insert(attempt.experiment_id);
          by_id[attempt.experiment_id]->attempt = std::move(attempt);
        }
        for (const auto& [id, entry] : by_id) {
          if (!with_attempt.contains(id)) {
            return absl::DataLossError(
                "PostgreSQL store " + display_name_ + ": experiment " +
                std::to_string(id) +
                " is done but has no completed attempt; the database was "
                "modified outside benchfleet or is damaged");
          }
        }
        for (const pqxx::row& row : txn.Exec(kVerdictsOf, ids)) {
          VerdictRecord verdict = ReadVerdict(row);
          by_id[verdict.experiment_id]->verdicts.push_back(std::move(verdict));
        }
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<ImportCounts> PgStore::ImportHistory(
    const std::vector<HistoryEntry>& entries) {
  RETURN_IF_ERROR(CheckImportEntries(entries));
  ASSIGN_OR_RETURN(const std::vector<std::string> labels_json,
                   ImportedLabelsJson(entries));
  ImportCounts counts;
  RETURN_IF_ERROR(Transact(
      "importing history", TxnKind::kWrite, [&](Txn& txn) -> absl::Status {
        counts = ImportCounts();
        for (size_t i = 0; i < entries.size(); ++i) {
          const ExperimentRecord& e = entries[i].experiment;
          const AttemptRecord& a = entries[i].attempt;
          if (!txn.Exec(kOriginPresent, e.origin).empty()) {
            ++counts.already_present;
            continue;
          }
          // Numbers are unique per campaign: serialize with CreateExperiment.
          txn.Exec(kCampaignLock, kCampaignLockClass, e.campaign);
          int64_t number = e.number;
          if (number < 1 ||
              !txn.Exec(kNumberTaken, e.campaign, number).empty()) {
            number = I64(txn.Exec(kNextNumber, e.campaign)[0][0]);
          }
          const int64_t experiment_id = I64(txn.Exec(
              kImportExperiment, number, e.name, e.campaign,
              ExperimentStateName(ExperimentState::kDone), e.state_reason,
              e.spec_yaml, e.spec_path, e.workdir, labels_json[i], e.attempts,
              e.max_attempts, e.submitted_by, ToMicros(e.created_at),
              ToMicros(e.updated_at), e.report_json, e.report_text, e.idea,
              e.origin, e.discarded_before)[0][0]);
          const int64_t attempt_id = I64(txn.Exec(
              kImportAttempt, experiment_id, a.agent_id,
              ImportedLeaseToken(e.origin),
              AttemptStateName(AttemptState::kDone),
              static_cast<int64_t>(a.seed), a.reason, a.environment_json,
              ToMicros(a.started_at), ToMicros(a.ended_at))[0][0]);
          for (const VerdictRecord& v : entries[i].verdicts) {
            txn.Exec(kInsertVerdict, experiment_id, attempt_id, v.variant,
                     v.verdict, v.reason, v.change, v.detail_json);
          }
          ++counts.imported;
        }
        return absl::OkStatus();
      }));
  return counts;
}

absl::StatusOr<std::vector<VerdictRecord>> PgStore::ListVerdicts(
    int64_t experiment_id) {
  std::vector<VerdictRecord> out;
  RETURN_IF_ERROR(Transact(
      "listing verdicts", TxnKind::kRead, [&](Txn& txn) -> absl::Status {
        out.clear();
        for (const pqxx::row& row : txn.Exec(kListVerdicts, experiment_id)) {
          out.push_back(ReadVerdict(row));
        }
        return absl::OkStatus();
      }));
  return out;
}

// ---- Samples ----

absl::Status PgStore::RecordSamples(const std::vector<SampleRecord>& samples) {
  if (samples.empty()) return absl::OkStatus();
  for (const SampleRecord& s : samples) {
    if (s.agent_id.find('\0') != std::string::npos ||
        s.detail_json.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          "PostgreSQL store " + display_name_ + ": a sample of agent \"" +
          s.agent_id.substr(0, s.agent_id.find('\0')) +
          "\" contains a NUL character, which PostgreSQL cannot store; "
          "nothing was stored");
    }
  }
  for (const SampleRecord& s : samples) {
    if (s.agent_id.size() > (size_t{1} << 30) ||
        s.detail_json.size() > (size_t{1} << 30)) {
      return absl::InvalidArgumentError(
          "PostgreSQL store " + display_name_ + ": a sample of agent \"" +
          s.agent_id.substr(0, 64) +
          "\" has a text field over 1 GiB; nothing was stored");
    }
  }
  return Transact("recording " + std::to_string(samples.size()) + " samples",
                  TxnKind::kWrite, [&](Txn& txn) -> absl::Status {
                    // One COPY for the whole batch: the rows stream to the
                    // server without waiting for replies.
                    txn.ExecOwnSql("COPY samples (" BF_SAMPLE_COLUMNS
                                   ") FROM STDIN (FORMAT binary)");
                    StreamSamples(txn.conn().handle(), samples);
                    return absl::OkStatus();
                  });
}

absl::StatusOr<std::vector<SampleRecord>> PgStore::ListSamples(
    int64_t attempt_id) {
  std::vector<SampleRecord> out;
  RETURN_IF_ERROR(Transact(
      "listing samples", TxnKind::kRead, [&](Txn& txn) -> absl::Status {
        out.clear();
        const pqxx::result r = txn.Exec(kListSamples, attempt_id);
        out.reserve(r.size());
        for (const pqxx::row& row : r) out.push_back(ReadSample(row));
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<int64_t> PgStore::DeleteSamplesBefore(absl::Time cutoff) {
  int64_t deleted = 0;
  RETURN_IF_ERROR(Transact(
      "deleting old samples", TxnKind::kWrite, [&](Txn& txn) -> absl::Status {
        deleted = static_cast<int64_t>(
            txn.Exec(kDeleteSamples, ToMicros(cutoff)).affected_rows());
        return absl::OkStatus();
      }));
  return deleted;
}

// ---- Agents ----

absl::Status PgStore::UpsertAgent(const AgentRecord& agent) {
  if (agent.id.empty()) return absl::InvalidArgumentError("agent id is empty");
  ASSIGN_OR_RETURN(std::string labels_json,
                   LabelsToJson(agent.labels, "labels of agent " + agent.id));
  return Transact(
      "registering agent " + agent.id, TxnKind::kWrite,
      [&](Txn& txn) -> absl::Status {
        const pqxx::result r =
            txn.Exec(kUpsertAgent, agent.id, agent.hostname, labels_json,
                     agent.facts_json, AgentStateName(agent.state),
                     agent.cordoned ? 1 : 0, ToMicros(agent.last_seen));
        if (r.affected_rows() != 1) {
          return absl::AlreadyExistsError(
              "agent id \"" + agent.id +
              "\" has the same key hash as another agent's id; choose "
              "another agent id");
        }
        return absl::OkStatus();
      });
}

absl::Status PgStore::SetAgentState(const std::string& agent_id,
                                    AgentState state, absl::Time now) {
  return Transact(
      "setting the state of agent " + agent_id, TxnKind::kWrite,
      [&](Txn& txn) -> absl::Status {
        // An agent marked offline was not seen then: keep its last_seen.
        const pqxx::result r =
            state != AgentState::kOffline
                ? txn.Exec(kSetAgentStateSeen, AgentStateName(state),
                           ToMicros(now), agent_id)
                : txn.Exec(kSetAgentState, AgentStateName(state), agent_id);
        if (r.affected_rows() == 0) {
          return absl::NotFoundError("agent " + agent_id + " not found");
        }
        return absl::OkStatus();
      });
}

absl::Status PgStore::SetAgentCordoned(const std::string& agent_id,
                                       bool cordoned) {
  return Transact(
      "cordoning agent " + agent_id, TxnKind::kWrite,
      [&](Txn& txn) -> absl::Status {
        if (txn.Exec(kSetAgentCordoned, cordoned ? 1 : 0, agent_id)
                .affected_rows() == 0) {
          return absl::NotFoundError("agent " + agent_id + " not found");
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<AgentRecord> PgStore::GetAgent(const std::string& agent_id) {
  AgentRecord out;
  RETURN_IF_ERROR(Transact(
      "reading agent " + agent_id, TxnKind::kRead,
      [&](Txn& txn) -> absl::Status {
        const pqxx::result r = txn.Exec(kGetAgent, agent_id);
        if (r.empty()) {
          return absl::NotFoundError("agent " + agent_id + " not found");
        }
        ASSIGN_OR_RETURN(out, ReadAgent(r[0], display_name_));
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<std::vector<AgentRecord>> PgStore::ListAgents() {
  std::vector<AgentRecord> out;
  RETURN_IF_ERROR(
      Transact("listing agents", TxnKind::kRead, [&](Txn& txn) -> absl::Status {
        out.clear();
        for (const pqxx::row& row : txn.Exec(kListAgents)) {
          ASSIGN_OR_RETURN(AgentRecord agent, ReadAgent(row, display_name_));
          out.push_back(std::move(agent));
        }
        return absl::OkStatus();
      }));
  return out;
}

}  // namespace benchfleet
