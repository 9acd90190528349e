#include "controller/report/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace benchfleet {

std::string FormatValue(double value, MetricUnit unit) {
  switch (unit) {
    case MetricUnit::kNanoseconds: {
      const double a = std::fabs(value);
      if (a >= 1e9) return absl::StrFormat("%.3f s", value / 1e9);
      if (a >= 1e6) return absl::StrFormat("%.2f ms", value / 1e6);
      if (a >= 1e3) return absl::StrFormat("%.1f us", value / 1e3);
      return absl::StrFormat("%.0f ns", value);
    }
    case MetricUnit::kBytes: {
      const double a = std::fabs(value);
      if (a >= 1024.0 * 1024 * 1024)
        return absl::StrFormat("%.2f GiB", value / (1024.0 * 1024 * 1024));
      if (a >= 1024.0 * 1024)
        return absl::StrFormat("%.1f MiB", value / (1024.0 * 1024));
      if (a >= 1024.0) return absl::StrFormat("%.1f KiB", value / 1024.0);
      return absl::StrFormat("%.0f B", value);
    }
    case MetricUnit::kPlain:
      return absl::StrFormat("%.4g", value);
  }
  return absl::StrFormat("%g", value);
}

std::string FormatPercent(double fraction) {
  return absl::StrFormat("%+.1f%%", fraction * 100.0);
}

namespace {

std::string FormatP(double p) {
  if (p < 1e-4) return absl::StrFormat("%.1e", p);
  return absl::StrFormat("%.4f", p);
}

std::string Pad(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

std::string PadLeft(std::string s, size_t width) {
  if (s.size() < width) s.insert(0, width - s.size(), ' ');
  return s;
}

}  // namespace

std::string RenderReportText(const ExperimentReport& report) {
  std::string out;
  const std::string title =
      absl::StrFormat("Experiment %03d: %s", report.number, report.name);
  if (report.failed) {
    absl::StrAppend(
        &out, title, "\n", "Result: no verdict\n",
        report.host_not_ready
            ? "Verdict: none: the host was not ready (the experiment goes "
              "back to the queue)\n"
            : "Verdict: FAILED\n",
        "Reason: ", report.failure, "\n");
  }
  for (const CandidateReport& c : report.candidates) {
    if (!out.empty()) out += "\n";
    absl::StrAppend(&out, title, "\n");
    absl::StrAppend(&out, "Variant: ", c.variant, " vs ", report.baseline, " (",
                    report.metric,
                    report.higher_is_better ? ", higher is better" : "", ")\n");
    absl::StrAppend(
        &out, "Result: ",
        c.candidate_median > 0 ? FormatValue(c.candidate_median, report.unit)
                               : std::string("n/a"),
        " (baseline: ", FormatValue(c.baseline_median, report.unit), ")\n");
    absl::StrAppend(
        &out, "Change: ", c.change_measured ? FormatPercent(c.change) : "n/a",
        c.change_measured && std::isfinite(c.change_ci_low) &&
                std::isfinite(c.change_ci_high)
            ? absl::StrCat(" (95% CI ", FormatPercent(c.change_ci_low), " to ",
                           FormatPercent(c.change_ci_high), ")")
            : "",
        c.change_measured && c.verdict == "KILL"
            ? " (runs stopped at their deadline count with what "
              "they measured until then)"
            : "",
        "\n");
    absl::StrAppend(&out, "Verdict: ", c.verdict, "\n");
    absl::StrAppend(&out, "Reason: ", c.reason, "\n");
    if (!c.conflict.empty())
      absl::StrAppend(&out, "Conflict: ", c.conflict, "\n");
    if (c.inputs.empty()) continue;
    size_t name_width = 5;
    for (const InputRow& row : c.inputs)
      name_width = std::max(name_width, row.input.size());
    absl::StrAppend(&out, "  ", Pad("input", name_width), "  ",
                    PadLeft("cand n", 7), "  ", PadLeft("base n", 7), "  ",
                    PadLeft("baseline", 11), "  ", PadLeft("median", 11), "  ",
                    PadLeft("CV", 6), "  ", PadLeft("change", 7), "  ",
                    Pad("95% CI", 17), "  ", PadLeft("p-value", 8),
                    "  verdict\n");
    int64_t outliers = 0;
    for (const InputRow& row : c.inputs) {
      outliers += row.outliers_removed;
      const std::string ci = absl::StrCat("[", FormatPercent(row.ci_low), ", ",
                                          FormatPercent(row.ci_high), "]");
      const bool measured = row.n_candidate > 0 && row.candidate_median > 0;
      absl::StrAppend(
          &out, "  ", Pad(row.input, name_width), "  ",
          PadLeft(absl::StrCat(row.n_candidate, "/", row.n_candidate_measured),
                  7),
          "  ",
          PadLeft(absl::StrCat(row.n_baseline, "/", row.n_baseline_measured),
                  7),
          "  ", PadLeft(FormatValue(row.baseline_median, report.unit), 11),
          "  ",
          PadLeft(
              measured ? FormatValue(row.candidate_median, report.unit) : "n/a",
              11),
          "  ",
          PadLeft(measured ? absl::StrFormat("%.1f%%", row.candidate_cv * 100)
                           : "n/a",
                  6),
          "  ", PadLeft(measured ? FormatPercent(row.change) : "n/a", 7), "  ",
          Pad(measured ? ci : "n/a", 17), "  ",
          PadLeft(measured ? FormatP(row.p_value) : "n/a", 8), "  ",
          row.verdict, "\n");
    }
    if (outliers > 0) {
      absl::StrAppend(
          &out, "  n = kept/measured runs; ", outliers,
          outliers == 1 ? " outlier" : " outliers",
          report.outlier_sigmas > 0
              ? absl::StrFormat(" (> %g robust σ)", report.outlier_sigmas)
              : std::string(),
          " removed on noisy inputs\n");
    }
  }
  if (report.environment.lines.size() == 1) {
    absl::StrAppend(&out, "\nEnvironment: ", report.environment.lines[0], "\n");
  } else if (!report.environment.lines.empty()) {
    absl::StrAppend(&out, "\nEnvironment:\n");
    for (const std::string& line : report.environment.lines)
      absl::StrAppend(&out, "  - ", line, "\n");
  }
  if (!report.source_bundle.empty()) {
    absl::StrAppend(&out, "\nSource: bundle ", report.source_bundle,
                    " (every variant)\n");
  }
  if (!report.source_commits.empty()) {
    absl::StrAppend(&out, "\nSource: ", report.source_repo, "\n");
    for (const ExperimentReport::SourceCommit& s : report.source_commits)
      absl::StrAppend(&out, "  - ", s.variant, ": ", s.commit, " (", s.ref,
                      ")\n");
  }
  if (report.reruns > 0) {
    std::vector<std::string> flags;
    for (const auto& [flag, count] : report.host_flags)
      flags.push_back(absl::StrCat(flag, " ×", count));
    absl::StrAppend(
        &out, "\nRe-runs: ", report.reruns,
        " measured run(s) repeated because the host was disturbed (",
        absl::StrJoin(flags, ", "), ")\n");
  }
  if (!report.warnings.empty()) {
    absl::StrAppend(&out, "\nWarnings:\n");
    for (const std::string& w : report.warnings)
      absl::StrAppend(&out, "  - ", w, "\n");
  }
  if (report.gate_wait_ns >= 1'000'000'000) {
    // Every wait names what held it back: the longest few here, all in JSON.
    constexpr size_t kWaitsShown = 5;
    std::vector<GateWait> waits = report.gate_waits;
    std::stable_sort(waits.begin(), waits.end(),
                     [](const GateWait& a, const GateWait& b) {
                       return a.wait_ns > b.wait_ns;
                     });
    absl::StrAppend(
        &out, absl::StrFormat("\nGates: waited %.1f s in %d wait(s) for the "
                              "host to cool down or quieten%s\n",
                              static_cast<double>(report.gate_wait_ns) / 1e9,
                              waits.size(), waits.empty() ? "" : ":"));
    int64_t rest_ns = 0;
    for (size_t i = 0; i < waits.size(); ++i) {
      if (i >= kWaitsShown) {
        rest_ns += waits[i].wait_ns;
        continue;
      }
      absl::StrAppend(
          &out, absl::StrFormat(
                    "  - %.2f s before %s: %s\n",
                    static_cast<double>(waits[i].wait_ns) / 1e9, waits[i].step,
                    waits[i].blocked_by.empty() ? "(the agent did not say)"
                                                : waits[i].blocked_by));
    }
    if (waits.size() > kWaitsShown) {
      absl::StrAppend(
          &out, absl::StrFormat("  - and %d shorter wait(s), %.2f s in all\n",
                                waits.size() - kWaitsShown,
                                static_cast<double>(rest_ns) / 1e9));
    }
  }
  absl::StrAppend(
      &out, "\n(seed ", report.seed, ", ", report.steps_run, " steps",
      report.host.empty() ? "" : absl::StrCat(", host ", report.host), ")\n");
  return out;
}

std::string ReportToJson(const ExperimentReport& report) {
  nlohmann::json j;
  j["number"] = report.number;
  j["name"] = report.name;
  j["campaign"] = report.campaign;
  j["metric"] = report.metric;
  j["unit"] = report.unit == MetricUnit::kNanoseconds ? "ns"
              : report.unit == MetricUnit::kBytes     ? "bytes"
                                                      : "";
  j["higher_is_better"] = report.higher_is_better;
  j["seed"] = std::to_string(report.seed);
  j["baseline"] = report.baseline;
  j["host"] = report.host;
  j["failed"] = report.failed;
  j["failure"] = report.failure;
  j["steps_run"] = report.steps_run;
  j["reruns"] = report.reruns;
  j["gate_wait_ns"] = report.gate_wait_ns;
  j["host_not_ready"] = report.host_not_ready;
  j["gate_waits"] = nlohmann::json::array();
  for (const GateWait& w : report.gate_waits) {
    j["gate_waits"].push_back({{"step", w.step},
                               {"wait_ns", w.wait_ns},
                               {"blocked_by", w.blocked_by}});
  }
  j["host_flags"] = report.host_flags;
  j["outlier_sigmas"] = report.outlier_sigmas;
  j["warnings"] = report.warnings;
  if (!report.source_bundle.empty()) j["source_bundle"] = report.source_bundle;
  if (!report.source_commits.empty()) {
    j["source_repo"] = report.source_repo;
    j["sources"] = nlohmann::json::array();
    for (const ExperimentReport::SourceCommit& s : report.source_commits) {
      j["sources"].push_back(
          {{"variant", s.variant}, {"ref", s.ref}, {"commit", s.commit}});
    }
  }
  j["candidates"] = nlohmann::json::array();
  for (const CandidateReport& c : report.candidates) {
    nlohmann::json jc;
    jc["variant"] = c.variant;
    jc["verdict"] = c.verdict;
    jc["reason"] = c.reason;
    jc["baseline_median"] = c.baseline_median;
    jc["candidate_median"] = c.candidate_median;
    jc["change"] = c.change;
    jc["p_value"] = c.p_value;
    jc["change_measured"] = c.change_measured;
    if (c.change_measured && std::isfinite(c.change_ci_low) &&
        std::isfinite(c.change_ci_high)) {
      jc["change_ci"] = {c.change_ci_low, c.change_ci_high};
    }
    jc["combines"] = c.combines;
    jc["conflict"] = c.conflict;
    jc["kill_skipped_runs"] = c.kill_skipped_runs;
    jc["kill_saved_ns"] = c.kill_saved_ns;
    jc["inputs"] = nlohmann::json::array();
    for (const InputRow& r : c.inputs) {
      jc["inputs"].push_back({{"input", r.input},
                              {"n_baseline", r.n_baseline},
                              {"n_candidate", r.n_candidate},
                              {"n_baseline_kept", r.n_baseline},
                              {"n_candidate_kept", r.n_candidate},
                              {"n_baseline_measured", r.n_baseline_measured},
                              {"n_candidate_measured", r.n_candidate_measured},
                              {"baseline_median", r.baseline_median},
                              {"candidate_median", r.candidate_median},
                              {"baseline_cv", r.baseline_cv},
                              {"candidate_cv", r.candidate_cv},
                              {"change", r.change},
                              {"ci_low", r.ci_low},
                              {"ci_high", r.ci_high},
                              {"p_value", r.p_value},
                              {"welch_p_value", r.welch_p_value},
                              {"outliers_removed", r.outliers_removed},
                              {"verdict", r.verdict}});
    }
    j["candidates"].push_back(std::move(jc));
  }
  j["baseline_inputs"] = nlohmann::json::array();
  for (const BaselineInputRow& b : report.baseline_inputs) {
    j["baseline_inputs"].push_back({{"input", b.input},
                                    {"n", b.n},
                                    {"median", b.median},
                                    {"mad", b.mad},
                                    {"cv", b.cv}});
  }
  nlohmann::json env;
  env["status"] = report.environment.status;
  env["reference_experiment_id"] = report.environment.reference_experiment_id;
  env["reference_experiment_number"] =
      report.environment.reference_experiment_number;
  env["lines"] = report.environment.lines;
  env["inputs"] = nlohmann::json::array();
  for (const BaselineDriftRow& r : report.environment.inputs) {
    env["inputs"].push_back({{"input", r.input},
                             {"previous_median", r.previous_median},
                             {"median", r.median},
                             {"change", r.change},
                             {"noise", r.noise},
                             {"moved", r.moved},
                             {"n_remeasured", r.n_remeasured},
                             {"remeasured_median", r.remeasured_median},
                             {"remeasured_change", r.remeasured_change},
                             {"remeasured_moved", r.remeasured_moved}});
  }
  j["environment"] = std::move(env);
  // Reasons quote stderr and process names: whatever bytes they hold.
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace benchfleet
