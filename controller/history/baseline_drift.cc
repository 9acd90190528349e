#include "controller/history/baseline_drift.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "controller/stats/stats.h"
#include "nlohmann/json.hpp"

namespace benchfleet::history {
namespace {

constexpr double kMadToSigma = 1.4826;
// Asymptotic standard error of the median relative to sigma / sqrt(n) for
// normal data: sqrt(pi / 2).
constexpr double kMedianSeFactor = 1.2533;

double MedianStandardError(double sigma, int64_t n) {
  return kMedianSeFactor * sigma / std::sqrt(static_cast<double>(n));
}

double SigmaOf(const BaselineStats& s) {
  if (s.mad) return kMadToSigma * *s.mad;
  return s.cv * s.median;
}

std::string EnvString(const nlohmann::json& env, const char* key) {
  if (!env.is_object()) return "";
  auto it = env.find(key);
  if (it == env.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  // Commits recorded per variant ({"base": "...", ...}): the attempts match
  // when every variant's commit does (keys are sorted, so the text is
  // canonical).
  if (it->is_object() && !it->empty()) return it->dump();
  return "";
}

}  // namespace

InputDrift CompareBaseline(absl::Span<const double> samples,
                           const BaselineStats& previous,
                           const DriftPolicy& policy) {
  InputDrift d;
  d.input = previous.input;
  d.previous_median = previous.median;
  const stats::Summary now = stats::Summarize(samples);
  d.median = now.median;
  const int64_t n_now = static_cast<int64_t>(now.n);
  if (n_now < policy.min_runs || previous.n < policy.min_runs) {
    d.why_not =
        absl::StrCat("too few runs to compare (", n_now, " now, ", previous.n,
                     " before; at least ", policy.min_runs, " each)");
    return d;
  }
  if (!(previous.median > 0) || !(now.median > 0)) {
    d.why_not = "a median is not positive, so a relative move is undefined";
    return d;
  }
  const double se_now = MedianStandardError(kMadToSigma * now.mad, n_now);
  const double se_before = MedianStandardError(SigmaOf(previous), previous.n);
  const double noise_abs = std::max(policy.z * std::hypot(se_now, se_before),
                                    policy.floor_fraction * previous.median);
  d.compared = true;
  d.change = now.median / previous.median - 1;
  d.noise = noise_abs / previous.median;
  d.moved = std::fabs(now.median - previous.median) > noise_abs;
  return d;
}

std::vector<InputDrift> CompareBaselines(
    const std::map<std::string, std::vector<double>>& samples,
    const std::vector<BaselineStats>& previous, const DriftPolicy& policy) {
  std::map<std::string, InputDrift> by_input;
  for (const BaselineStats& p : previous) {
    auto it = samples.find(p.input);
    if (it == samples.end()) {
      InputDrift d;
      d.input = p.input;
      d.previous_median = p.median;
      d.why_not = "not measured in this attempt";
      by_input[p.input] = d;
      continue;
    }
    by_input[p.input] = CompareBaseline(it->second, p, policy);
  }
  for (const auto& [input, values] : samples) {
    if (by_input.contains(input)) continue;
    InputDrift d;
    d.input = input;
    d.median = stats::Median(values);
    d.why_not = "not measured in the earlier attempt";
    by_input[input] = d;
  }
  std::vector<InputDrift> out;
  for (auto& [input, d] : by_input) out.push_back(std::move(d));
  return out;
}

absl::StatusOr<std::vector<BaselineStats>> BaselineStatsFromReportJson(
    const std::string& report_json, std::string* metric) {
  const nlohmann::json j = nlohmann::json::parse(report_json, nullptr,
                                                 /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        "the stored report is not a JSON object; it cannot serve as a "
        "baseline reference");
  }
  if (metric != nullptr) *metric = j.value("metric", std::string());
  std::vector<BaselineStats> out;
  auto number = [](const nlohmann::json& o, const char* key) {
    auto it = o.find(key);
    return it != o.end() && it->is_number() ? it->get<double>() : 0.0;
  };
  if (auto bi = j.find("baseline_inputs"); bi != j.end() && bi->is_array()) {
    for (const nlohmann::json& row : *bi) {
      if (!row.is_object() || !row.contains("input")) continue;
      BaselineStats s;
      s.input = row.value("input", std::string());
      s.n = static_cast<int64_t>(number(row, "n"));
      s.median = number(row, "median");
      if (row.contains("mad")) s.mad = number(row, "mad");
      s.cv = number(row, "cv");
      out.push_back(std::move(s));
    }
  } else if (auto cs = j.find("candidates"); cs != j.end() && cs->is_array()) {
    // Older reports: every candidate row repeats the baseline's columns; the
    // first row per input is as good as any.
    std::map<std::string, BaselineStats> by_input;
    for (const nlohmann::json& c : *cs) {
      auto rows = c.find("inputs");
      if (rows == c.end() || !rows->is_array()) continue;
      for (const nlohmann::json& row : *rows) {
        if (!row.is_object()) continue;
        const std::string input = row.value("input", std::string());
        if (input.empty() || by_input.contains(input)) continue;
        BaselineStats s;
        s.input = input;
        s.n = static_cast<int64_t>(number(row, "n_baseline"));
        s.median = number(row, "baseline_median");
        s.cv = number(row, "baseline_cv");
        if (s.n > 0) by_input[input] = s;
      }
    }
    for (auto& [input, s] : by_input) out.push_back(std::move(s));
  }
  if (out.empty()) {
    return absl::InvalidArgumentError(
        "the stored report holds no baseline statistics per input");
  }
  return out;
}

BaselineReference FindBaselineReference(
    const std::string& current_environment_json, int64_t current_experiment_id,
    const std::vector<PastAttempt>& history) {
  BaselineReference ref;
  const nlohmann::json env = nlohmann::json::parse(
      current_environment_json, nullptr, /*allow_exceptions=*/false);
  const std::string fingerprint = EnvString(env, "fingerprint");
  const std::string commit = EnvString(env, "commit");
  if (fingerprint.empty() || commit.empty()) {
    ref.why_not = absl::StrCat(
        "not compared with history: this attempt's environment records no ",
        fingerprint.empty() && commit.empty() ? "host fingerprint or commit"
        : fingerprint.empty()                 ? "host fingerprint"
                                              : "commit",
        " (an agent or spec without source commits cannot be matched)");
    return ref;
  }
  for (auto it = history.rbegin(); it != history.rend(); ++it) {
    if (!it->completed || it->experiment_id == current_experiment_id) continue;
    const nlohmann::json past = nlohmann::json::parse(
        it->environment_json, nullptr, /*allow_exceptions=*/false);
    if (EnvString(past, "fingerprint") != fingerprint ||
        EnvString(past, "commit") != commit) {
      continue;
    }
    absl::StatusOr<std::vector<BaselineStats>> inputs =
        BaselineStatsFromReportJson(it->report_json, &ref.metric);
    if (!inputs.ok()) continue;
    ref.available = true;
    ref.experiment_id = it->experiment_id;
    ref.experiment_number = it->experiment_number;
    ref.completed_at = it->completed_at;
    ref.inputs = std::move(*inputs);
    return ref;
  }
  ref.no_history = true;
  ref.why_not =
      "no earlier completed attempt on this host fingerprint and commit to "
      "compare the baseline with";
  return ref;
}

}  // namespace benchfleet::history
