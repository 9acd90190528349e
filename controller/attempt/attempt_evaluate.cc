// AttemptDriver, part 3 of 3: the evaluation — the environment check against
// the previous comparable baseline, the statistics per input and candidate,
// the verdicts and the report. The plan and results are in attempt_driver.cc,
// the KILL rule in attempt_kill.cc.
#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "controller/attempt/attempt_driver.h"
#include "controller/stats/stats.h"
#include "controller/verdict/verdict.h"

namespace benchfleet {
namespace {

double WeightedGeoMean(
    const std::vector<std::pair<double, double>>& value_weight) {
  double num = 0, den = 0;
  for (const auto& [v, w] : value_weight) {
    if (v <= 0) continue;
    num += w * std::log(v);
    den += w;
  }
  return den > 0 ? std::exp(num / den) : 0;
}

}  // namespace

double AttemptDriver::MedianAcrossInputs(const std::string& variant,
                                         bool completed_only) const {
  std::vector<std::pair<double, double>> medians;
  for (const InputSpec& in : spec_.inputs) {
    auto it = samples_.find({variant, in.name});
    if (it == samples_.end()) continue;
    std::vector<double> values;
    for (const Sample& s : it->second)
      if (!completed_only || !s.timed_out) values.push_back(s.value);
    if (!values.empty()) medians.emplace_back(stats::Median(values), in.weight);
  }
  return WeightedGeoMean(medians);
}

std::map<std::string, std::vector<double>> AttemptDriver::BaselineSamples()
    const {
  std::map<std::string, std::vector<double>> out;
  const std::string& base = spec_.baseline().name;
  for (const InputSpec& in : spec_.inputs) {
    auto it = samples_.find({base, in.name});
    if (it == samples_.end() || it->second.empty()) continue;
    std::vector<double>& values = out[in.name];
    for (const Sample& s : it->second) values.push_back(s.value);
  }
  return out;
}

EnvironmentCheck AttemptDriver::CheckEnvironment() const {
  EnvironmentCheck env;
  if (!reference_) return env;
  const history::BaselineReference& ref = *reference_;
  if (!ref.available) {
    env.status = ref.no_history ? "no-history" : "not-compared";
    env.lines.push_back(ref.why_not);
    return env;
  }
  env.reference_experiment_id = ref.experiment_id;
  env.reference_experiment_number = ref.experiment_number;
  const std::string since =
      absl::StrFormat("experiment %03d (%s)", ref.experiment_number,
                      absl::FormatTime("%Y-%m-%d %H:%M UTC", ref.completed_at,
                                       absl::UTCTimeZone()));
  if (!ref.metric.empty() && ref.metric != spec_.primary_metric) {
    env.status = "not-compared";
    env.lines.push_back(absl::StrCat("not compared with history: ", since,
                                     " measured ", ref.metric,
                                     ", this attempt ", spec_.primary_metric));
    return env;
  }
  const std::vector<history::InputDrift> drift =
      history::CompareBaselines(BaselineSamples(), ref.inputs);
  const history::InputDrift* largest = nullptr;
  std::vector<std::string> not_compared;
  bool still_moved = false;
  int remeasured_inputs = 0;
  for (const history::InputDrift& d : drift) {
    if (!d.compared) {
      not_compared.push_back(absl::StrCat(d.input, ": ", d.why_not));
      continue;
    }
    BaselineDriftRow row;
    row.input = d.input;
    row.previous_median = d.previous_median;
    row.median = d.median;
    row.change = d.change;
    row.noise = d.noise;
    row.moved = d.moved;
    if (largest == nullptr || std::fabs(d.change) > std::fabs(largest->change))
      largest = &d;
    if (!d.moved) {
      env.inputs.push_back(std::move(row));
      continue;
    }
    std::string line = absl::StrFormat(
        "baseline median on %s moved %s (noise ±%.1f%%) since %s on this "
        "fingerprint and commit; re-measured: ",
        d.input, FormatPercent(d.change), d.noise * 100, since);
    auto rm = remeasured_.find(d.input);
    std::optional<history::InputDrift> again;
    if (rm != remeasured_.end()) {
      for (const history::BaselineStats& b : ref.inputs)
        if (b.input == d.input) again = history::CompareBaseline(rm->second, b);
      row.n_remeasured = static_cast<int64_t>(rm->second.size());
      ++remeasured_inputs;
    }
    if (again && again->compared) {
      row.remeasured_median = again->median;
      row.remeasured_change = again->change;
      row.remeasured_moved = again->moved;
      absl::StrAppend(&line, FormatPercent(again->change));
    } else {
      // Not re-measured (the attempt ended first) or too few runs to tell:
      // the move stands.
      row.remeasured_moved = true;
      absl::StrAppend(&line, "n/a");
    }
    if (row.remeasured_moved) {
      still_moved = true;
      env.lines.push_back(absl::StrCat("environment changed: ", line));
    } else {
      env.lines.push_back(absl::StrCat(
          "environment changed (transient): re-measured, back within noise; ",
          line));
    }
    env.inputs.push_back(std::move(row));
  }
  if (env.inputs.empty()) {
    env.status = "not-compared";
    env.lines.push_back(absl::StrCat("not compared with ", since, ": ",
                                     absl::StrJoin(not_compared, "; ")));
    return env;
  }
  if (env.lines.empty()) {
    env.status = "unchanged";
    env.lines.push_back(absl::StrFormat(
        "baseline within noise of %s on this fingerprint and commit (largest "
        "move %s on %s, noise ±%.1f%%)",
        since, FormatPercent(largest->change), largest->input,
        largest->noise * 100));
    return env;
  }
  env.status = still_moved ? "changed" : "transient";
  if (remeasured_inputs > 0) {
    env.lines.push_back(absl::StrCat(
        "the ", spec_.runs, " re-measured baseline run(s) per moved input are ",
        "not part of the baseline sample the verdicts use (they ran after the "
        "candidates, not interleaved with them)",
        still_moved ? "; check the host (kernel, firmware, governor, "
                      "background services) before trusting comparisons with "
                      "earlier experiments"
                    : ""));
  }
  return env;
}

ExperimentReport AttemptDriver::BuildReport() const {
  return Evaluate(true, nullptr);
}

ExperimentReport AttemptDriver::Evaluate(
    bool final_pass,
    std::map<std::string, std::set<std::string>>* extend) const {
  ExperimentReport report;
  report.number = number_;
  report.name = spec_.name;
  report.campaign = spec_.campaign;
  report.metric = spec_.primary_metric;
  report.seed = seed_;
  report.baseline = spec_.baseline().name;
  report.steps_run = steps_done_;
  report.failed = failed_;
  report.failure = failure_;
  report.host_not_ready = host_not_ready_;
  report.gate_wait_ns = gate_wait_ns_;
  report.gate_waits = gate_waits_;
  report.warnings = warnings_;
  report.source_bundle = spec_.source_bundle_digest;
  if (!spec_.source_repo.empty()) {
    report.source_repo = spec_.source_repo;
    for (const VariantSpec& v : spec_.variants) {
      report.source_commits.push_back({v.name, spec_.RefOf(v), v.commit});
    }
  }
  Better better = Better::kLower;
  if (report.metric == "max_rss") {
    report.unit = MetricUnit::kBytes;
  } else if (report.metric == "wall_time" || report.metric == "user_time" ||
             report.metric == "sys_time") {
    report.unit = MetricUnit::kNanoseconds;
  } else {
    report.unit = MetricUnit::kPlain;
    for (const CustomMetricSpec& m : spec_.custom_metrics)
      if (m.name == report.metric) better = m.better;
  }
  report.higher_is_better = better == Better::kHigher;
  report.outlier_sigmas = verdict::kOutlierSigmas;
  if (failed_) return report;

  const verdict::DecisionPolicy policy =
      verdict::PolicyFor(spec_.verdict, better, seed_);
  const std::string& base = spec_.baseline().name;

  // Outputs the baseline itself does not reproduce cannot be compared.
  std::set<std::string> unstable_inputs;
  if (spec_.compare != CompareMode::kNone) {
    for (const InputSpec& in : spec_.inputs) {
      auto it = digests_.find({base, in.name});
      if (it != digests_.end() && it->second.size() > 1) {
        unstable_inputs.insert(in.name);
        report.warnings.push_back(absl::StrCat(
            "the baseline's output on input ", in.name,
            " differs between its own runs, so outputs were not compared "
            "there; make the ",
            "output deterministic or set correctness.compare: none"));
      }
    }
  }

  std::map<std::string, double> improvement_of;
  for (size_t vi = 1; vi < spec_.variants.size(); ++vi) {
    const VariantSpec& v = spec_.variants[vi];
    const VariantState& vs = variants_.at(v.name);
    verdict::CandidateEvidence ev;
    ev.variant = v.name;
    ev.correctness_failed = vs.rejected;
    ev.correctness_detail = vs.reject_reason;
    ev.killed = vs.killed;
    ev.kill_detail = vs.kill_reason;
    bool all_at_max = true;
    for (const InputSpec& in : spec_.inputs) {
      verdict::InputSamples is;
      is.input = in.name;
      is.weight = in.weight;
      auto b = samples_.find({base, in.name});
      auto c = samples_.find({v.name, in.name});
      if (b != samples_.end())
        for (const Sample& s : b->second) is.baseline.push_back(s.value);
      if (c != samples_.end())
        for (const Sample& s : c->second) is.candidate.push_back(s.value);
      if (static_cast<int>(is.candidate.size()) < spec_.max_runs ||
          static_cast<int>(is.baseline.size()) < spec_.max_runs) {
        all_at_max = false;
      }
      if (spec_.compare != CompareMode::kNone &&
          !unstable_inputs.contains(in.name)) {
        auto bd = digests_.find({base, in.name});
        auto cd = digests_.find({v.name, in.name});
        if (bd != digests_.end() && cd != digests_.end()) {
          for (const std::string& d : cd->second) {
            if (!bd->second.contains(d)) {
              is.output_differs = true;
              is.output_detail = absl::StrCat(
                  spec_.compare == CompareMode::kFile ? spec_.compare_path
                                                      : "stdout",
                  " sha256 ", d.substr(0, 12), "… vs the baseline's ",
                  bd->second.begin()->substr(0, 12), "…");
              break;
            }
          }
        }
      }
      // The decision engine needs samples on both sides; a killed or rejected
      // candidate may have none on some inputs, and its verdict does not depend
      // on them.
      if ((vs.rejected || vs.killed) &&
          (is.baseline.size() < 2 || is.candidate.size() < 2) &&
          !is.output_differs) {
        continue;
      }
      ev.inputs.push_back(std::move(is));
    }
    ev.at_max_runs = final_pass || all_at_max;

    const verdict::Decision d = verdict::Decide(ev, policy);
    if (extend != nullptr && d.needs_more_runs) {
      for (const std::string& in : d.inputs_to_extend)
        (*extend)[v.name].insert(in);
    }

    CandidateReport cr;
    cr.variant = v.name;
    cr.verdict = verdict::VerdictName(d.verdict);
    cr.reason = d.reason;
    cr.change = d.aggregate_change;
    cr.p_value = d.aggregate_p_value;
    cr.change_measured = d.aggregate_measured;
    cr.change_ci_low = d.aggregate_change_ci.low;
    cr.change_ci_high = d.aggregate_change_ci.high;
    cr.combines = v.combines;
    cr.kill_skipped_runs = vs.kill_skipped_runs;
    cr.kill_saved_ns = vs.kill_saved_ns;
    std::vector<std::pair<double, double>> base_medians, cand_medians;
    for (const verdict::InputDecision& id : d.inputs) {
      InputRow row;
      row.input = id.input;
      row.n_baseline = static_cast<int64_t>(id.baseline.n);
      row.n_candidate = static_cast<int64_t>(id.candidate.n);
      row.n_baseline_measured =
          static_cast<int64_t>(id.baseline.n + id.baseline_outliers_removed);
      row.n_candidate_measured =
          static_cast<int64_t>(id.candidate.n + id.candidate_outliers_removed);
      row.baseline_median = id.baseline.median;
      row.candidate_median = id.candidate.median;
      row.baseline_cv = id.baseline.cv;
      row.candidate_cv = id.candidate.cv;
      row.change = id.change;
      row.ci_low = id.change_ci.low;
      row.ci_high = id.change_ci.high;
      row.p_value = id.p_value;
      row.welch_p_value = id.welch_p_value;
      row.outliers_removed = static_cast<int64_t>(
          id.baseline_outliers_removed + id.candidate_outliers_removed);
      // Per-input classification: the decision table's thresholds and noise
      // rule, from the decision engine.
      bool differs = false;
      for (const verdict::InputSamples& is : ev.inputs)
        if (is.input == id.input) differs = is.output_differs;
      row.verdict =
          verdict::VerdictName(verdict::ClassifyInput(id, differs, policy));
      base_medians.emplace_back(id.baseline.median, id.weight);
      cand_medians.emplace_back(id.candidate.median, id.weight);
      cr.inputs.push_back(std::move(row));
    }
    if (d.aggregate_measured) {
      // The medians of the very inputs the aggregate combines, so that Result
      // and Change agree (ratio of these = 1 + change), whatever the verdict.
      cr.baseline_median = WeightedGeoMean(base_medians);
      cr.candidate_median = WeightedGeoMean(cand_medians);
    } else {
      // No aggregate (an input could not be compared, e.g. a candidate that
      // crashed early): show what was measured, from the raw samples of the
      // inputs on which both sides completed runs, and no change.
      std::vector<std::pair<double, double>> base_raw, cand_raw;
      for (const InputSpec& in : spec_.inputs) {
        auto b = samples_.find({base, in.name});
        auto c = samples_.find({v.name, in.name});
        if (b == samples_.end() || c == samples_.end()) continue;
        std::vector<double> base_values, cand_values;
        for (const Sample& s : b->second) base_values.push_back(s.value);
        for (const Sample& s : c->second)
          if (!s.timed_out) cand_values.push_back(s.value);
        if (base_values.empty() || cand_values.empty()) continue;
        base_raw.emplace_back(stats::Median(base_values), in.weight);
        cand_raw.emplace_back(stats::Median(cand_values), in.weight);
      }
      cr.baseline_median =
          base_raw.empty() ? MedianAcrossInputs(base, /*completed_only=*/false)
                           : WeightedGeoMean(base_raw);
      cr.candidate_median = WeightedGeoMean(cand_raw);
    }
    if (d.aggregate_measured && d.verdict != verdict::Verdict::kKill &&
        d.verdict != verdict::Verdict::kReject) {
      improvement_of[v.name] = d.aggregate_improvement;
    }
    report.candidates.push_back(std::move(cr));
  }

  // Compound variants: a combination that does worse than its best part is a
  // conflict.
  for (CandidateReport& cr : report.candidates) {
    if (cr.combines.empty() || !improvement_of.contains(cr.variant)) continue;
    std::string best;
    double best_improvement = -1e300;
    for (const std::string& part : cr.combines) {
      auto it = improvement_of.find(part);
      if (it != improvement_of.end() && it->second > best_improvement) {
        best = part;
        best_improvement = it->second;
      }
    }
    if (!best.empty() && improvement_of[cr.variant] < best_improvement) {
      cr.conflict = absl::StrFormat(
          "%s improves %.1f%%, less than its part %s alone (%.1f%%): the parts "
          "conflict; keep "
          "only the better one",
          cr.variant, improvement_of[cr.variant] * 100, best,
          best_improvement * 100);
    }
  }
  for (const auto& [input, values] : BaselineSamples()) {
    const stats::Summary sum = stats::Summarize(values);
    report.baseline_inputs.push_back(
        {input, static_cast<int64_t>(sum.n), sum.median, sum.mad, sum.cv});
  }
  report.environment = CheckEnvironment();
  report.reruns = reruns_;
  for (const auto& [flag, count] : flag_counts_)
    report.host_flags[flag] = count;
  if (flagged_kept_ > 0) {
    report.warnings.push_back(absl::StrCat(
        flagged_kept_, " measured run(s) were disturbed by the host (",
        absl::StrJoin(flag_counts_, ", ", absl::PairFormatter("×")),
        ") and kept because the re-run budget of ", MaxReruns(),
        " was spent; check the host for background load or throttling"));
  }
  if (extended_) {
    report.warnings.push_back(absl::StrCat(
        "some inputs were noisy or not yet significant after ", spec_.runs,
        " runs and were extended towards max_runs (", spec_.max_runs, ")"));
  }
  return report;
}

}  // namespace benchfleet
