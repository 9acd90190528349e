#include "controller/history/history.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace benchfleet {
namespace {

std::string StringAt(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

double NumberAt(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_number() ? it->get<double>() : 0.0;
}

int64_t IntAt(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_number() ? it->get<int64_t>() : 0;
}

bool HostMatches(const std::string& host, const HostIdentity& id) {
  if (host.empty()) return true;
  if (host == id.hostname || host == id.fingerprint) return true;
  return host.size() >= 6 && id.fingerprint.compare(0, host.size(), host) == 0;
}

std::string DescribeDiscard(const HistoryEntry& entry,
                            const VerdictRecord& verdict) {
  const ExperimentRecord& e = entry.experiment;
  const absl::Time decided = entry.attempt.ended_at != absl::UnixEpoch()
                                 ? entry.attempt.ended_at
                                 : e.updated_at;
  return absl::StrFormat(
      "experiment %03d %s%s on %s: %s %+.1f%% (%s)", e.number, e.name,
      e.campaign.empty() ? "" : absl::StrCat(" (campaign ", e.campaign, ")"),
      absl::FormatTime("%Y-%m-%d", decided, absl::UTCTimeZone()),
      verdict.variant, verdict.change * 100.0, verdict.reason);
}

}  // namespace

std::vector<std::string> DiscardedBefore(
    const std::vector<HistoryEntry>& history, const std::string& idea,
    const std::vector<std::string>& candidates) {
  std::vector<std::string> out;
  if (!idea.empty()) {
    for (auto it = history.rbegin(); it != history.rend(); ++it) {
      if (it->experiment.idea != idea) continue;
      for (const VerdictRecord& v : it->verdicts) {
        if (v.verdict != "DISCARD") continue;
        out.push_back(absl::StrCat("idea \"", idea, "\" was DISCARDed before: ",
                                   DescribeDiscard(*it, v)));
        return out;
      }
    }
    return out;
  }
  for (const std::string& candidate : candidates) {
    bool found = false;
    for (auto it = history.rbegin(); it != history.rend() && !found; ++it) {
      for (const VerdictRecord& v : it->verdicts) {
        if (v.variant != candidate || v.verdict != "DISCARD") continue;
        out.push_back(
            absl::StrCat("variant \"", candidate, "\" of ", it->experiment.name,
                         " was DISCARDed before: ", DescribeDiscard(*it, v)));
        found = true;
        break;
      }
    }
  }
  return out;
}

HostIdentity HostIdentityOf(const std::string& environment_json,
                            const std::string& variant) {
  HostIdentity id;
  const nlohmann::json env =
      nlohmann::json::parse(environment_json, nullptr, false);
  if (!env.is_object()) return id;
  id.fingerprint = StringAt(env, "fingerprint");
  id.hostname = StringAt(env, "hostname");
  auto commit = env.find("commit");
  if (commit != env.end()) {
    if (commit->is_string()) {
      id.commit = commit->get<std::string>();
    } else if (commit->is_object()) {
      id.commit = StringAt(*commit, variant.c_str());
    }
  }
  return id;
}

absl::StatusOr<std::vector<HistoryRow>> BuildHistoryRows(
    const std::vector<HistoryEntry>& entries, const HistoryRowFilter& filter) {
  std::vector<HistoryRow> rows;
  for (const HistoryEntry& entry : entries) {
    const ExperimentRecord& e = entry.experiment;
    const nlohmann::json report =
        nlohmann::json::parse(e.report_json, nullptr, false);
    const nlohmann::json* candidates = nullptr;
    if (report.is_object() && report.contains("candidates")) {
      candidates = &report["candidates"];
    }
    if (candidates == nullptr || !candidates->is_array()) {
      return absl::DataLossError(
          "experiment " + std::to_string(e.number) + " (" + e.name + ", id " +
          std::to_string(e.id) +
          ") has a report that is not benchfleet report JSON; its history "
          "cannot be shown");
    }
    const std::map<std::string, std::string> verdicts = [&] {
      std::map<std::string, std::string> out;
      for (const VerdictRecord& v : entry.verdicts) out[v.variant] = v.verdict;
      return out;
    }();
    HistoryRow base;
    base.time = entry.attempt.started_at;
    base.experiment_id = e.id;
    base.experiment_number = e.number;
    base.experiment_name = e.name;
    base.campaign = e.campaign;
    base.metric = StringAt(report, "metric");
    base.unit = StringAt(report, "unit");
    const std::string baseline = StringAt(report, "baseline");
    const HostIdentity host =
        HostIdentityOf(entry.attempt.environment_json, baseline);
    if (!HostMatches(filter.host, host)) continue;
    base.fingerprint = host.fingerprint;
    base.hostname = host.hostname;

    // Inputs in report order; the baseline's row from the first candidate
    // that measured the input.
    std::vector<std::string> inputs;
    std::map<std::string, HistoryRow> baseline_rows;
    std::map<std::string, std::vector<HistoryRow>> candidate_rows;
    for (const nlohmann::json& c : *candidates) {
      if (!c.is_object()) continue;
      const std::string variant = StringAt(c, "variant");
      auto in = c.find("inputs");
      if (in == c.end() || !in->is_array()) continue;
      for (const nlohmann::json& r : *in) {
        if (!r.is_object()) continue;
        const std::string input = StringAt(r, "input");
        if (!filter.input.empty() && input != filter.input) continue;
        if (!baseline_rows.count(input)) {
          inputs.push_back(input);
          HistoryRow row = base;
          row.input = input;
          row.variant = baseline;
          row.baseline = true;
          row.median = NumberAt(r, "baseline_median");
          row.n = IntAt(r, "n_baseline");
          row.cv = NumberAt(r, "baseline_cv");
          row.commit = host.commit;
          baseline_rows.emplace(input, std::move(row));
        }
        HistoryRow row = base;
        row.input = input;
        row.variant = variant;
        row.median = NumberAt(r, "candidate_median");
        row.n = IntAt(r, "n_candidate");
        row.cv = NumberAt(r, "candidate_cv");
        row.change = NumberAt(r, "change");
        row.input_verdict = StringAt(r, "verdict");
        auto v = verdicts.find(variant);
        row.verdict = v != verdicts.end() ? v->second : StringAt(c, "verdict");
        row.commit =
            HostIdentityOf(entry.attempt.environment_json, variant).commit;
        candidate_rows[input].push_back(std::move(row));
      }
    }
    for (const std::string& input : inputs) {
      rows.push_back(std::move(baseline_rows[input]));
      for (HistoryRow& row : candidate_rows[input]) {
        rows.push_back(std::move(row));
      }
    }
  }
  return rows;
}

}  // namespace benchfleet
