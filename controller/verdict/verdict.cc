#include "controller/verdict/verdict.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/spec.h"
#include "controller/stats/stats.h"

namespace benchfleet::verdict {
namespace {

// |z| above this is "as significant as it gets"; keeps infinities out of the
// Stouffer sum.
constexpr double kMaxAbsZ = 40;

bool Noisy(double cv, double max_cv) {
  return cv > max_cv + kThresholdTolerance;
}

bool Usable(double median) { return std::isfinite(median) && median > 0; }

// "12.3%" for 0.123.
std::string Pct(double fraction) {
  return absl::StrFormat("%.1f%%", 100 * fraction);
}

// "-12.3%" / "+4.0%" for a signed change.
std::string SignedPct(double fraction) {
  return absl::StrFormat("%+.1f%%", 100 * fraction);
}

std::string PValue(double p) { return absl::StrFormat("p=%.3g", p); }

// "12.3% better" / "4.0% worse" / "no change".
std::string Direction(double improvement) {
  if (improvement > 0) return absl::StrCat(Pct(improvement), " better");
  if (improvement < 0) return absl::StrCat(Pct(-improvement), " worse");
  return "no change";
}

// Signed z of one input's two-sided Mann-Whitney p: positive when the
// candidate's values rank on the better side of the baseline's.
double SignedZ(const stats::TestResult& mw, size_t n_candidate,
               size_t n_baseline, Better better) {
  const double centre = static_cast<double>(n_candidate) * n_baseline / 2;
  // statistic = pairs where the candidate is larger; for kLower larger is
  // worse.
  double sign = mw.statistic < centre ? 1 : (mw.statistic > centre ? -1 : 0);
  if (better == Better::kHigher) sign = -sign;
  // -Quantile(p/2) rather than Quantile(1 - p/2): exact in the far tail.
  const double magnitude =
      std::min(kMaxAbsZ, -stats::NormalQuantile(mw.p_value / 2));
  return sign * magnitude;
}

// The samples an input decided on (after outlier removal on the flaky path),
// kept for the aggregate's bootstrap.
struct DecidedSamples {
  std::vector<double> baseline;
  std::vector<double> candidate;
};

InputDecision AnalyzeInput(const InputSamples& in, const DecisionPolicy& policy,
                           uint64_t seed, double* signed_z,
                           DecidedSamples* decided) {
  InputDecision out;
  out.input = in.input;
  out.weight = in.weight;
  *signed_z = 0;

  std::vector<double> baseline = in.baseline;
  std::vector<double> candidate = in.candidate;
  const stats::Summary raw_baseline = stats::Summarize(baseline);
  const stats::Summary raw_candidate = stats::Summarize(candidate);
  out.flaky = Noisy(raw_baseline.cv, policy.max_cv) ||
              Noisy(raw_candidate.cv, policy.max_cv);
  if (out.flaky) {
    // Both groups are trimmed, never just one, so the comparison stays
    // symmetric.
    stats::OutlierResult b = stats::RemoveOutliers(baseline, kOutlierSigmas);
    stats::OutlierResult c = stats::RemoveOutliers(candidate, kOutlierSigmas);
    out.baseline_outliers_removed = b.removed.size();
    out.candidate_outliers_removed = c.removed.size();
    baseline = std::move(b.kept);
    candidate = std::move(c.kept);
    out.baseline = stats::Summarize(baseline);
    out.candidate = stats::Summarize(candidate);
    out.still_flaky = Noisy(out.baseline.cv, policy.max_cv) ||
                      Noisy(out.candidate.cv, policy.max_cv);
  } else {
    out.baseline = raw_baseline;
    out.candidate = raw_candidate;
  }

  out.measurable = baseline.size() >= 2 && candidate.size() >= 2 &&
                   Usable(out.baseline.median) && Usable(out.candidate.median);
  if (!out.measurable) return out;

  out.change = out.candidate.median / out.baseline.median - 1;
  out.improvement = policy.better == Better::kLower ? -out.change : out.change;
  const stats::Interval ratio_ci = stats::BootstrapMedianRatioCI(
      candidate, baseline, policy.bootstrap_iterations, 0.95, seed);
  out.change_ci = {ratio_ci.low - 1, ratio_ci.high - 1};
  const stats::TestResult mw = stats::MannWhitneyU(candidate, baseline);
  out.p_value = mw.p_value;
  out.welch_p_value = stats::WelchT(candidate, baseline).p_value;
  out.regressed =
      out.improvement < -policy.input_regression - kThresholdTolerance;
  *signed_z = SignedZ(mw, candidate.size(), baseline.size(), policy.better);
  decided->baseline = std::move(baseline);
  decided->candidate = std::move(candidate);
  return out;
}

Decision Finish(Decision d, Verdict verdict, std::string reason) {
  d.verdict = verdict;
  d.reason = std::move(reason);
  return d;
}

// Rows 3 and 7: INCONCLUSIVE, or a request for more runs when they can still be
// extended.
Decision Inconclusive(Decision d, const CandidateEvidence& evidence,
                      std::vector<std::string> inputs, const std::string& why) {
  d.verdict = Verdict::kInconclusive;
  if (evidence.at_max_runs) {
    d.reason = absl::StrCat(why, " (at max_runs)");
  } else {
    d.needs_more_runs = true;
    d.inputs_to_extend = std::move(inputs);
    d.reason =
        absl::StrCat(why, "; extending ",
                     absl::StrJoin(d.inputs_to_extend, ", "), " to max_runs");
  }
  return d;
}

// "the keep threshold -5.0% and the maybe threshold -2.0%".
std::string ThresholdList(const std::vector<DecidingThreshold>& thresholds) {
  std::vector<std::string> parts;
  for (const DecidingThreshold& t : thresholds)
    parts.push_back(
        absl::StrCat("the ", t.name, " threshold ", SignedPct(t.change)));
  return absl::StrJoin(parts, " and ");
}

// The change CI widened, if need be, to include the point estimate.
stats::Interval CheckedSpan(const InputDecision& in) {
  return {std::min(in.change_ci.low, in.change),
          std::max(in.change_ci.high, in.change)};
}

std::string CiText(const stats::Interval& ci) {
  return absl::StrCat("95% CI [", SignedPct(ci.low), ", ", SignedPct(ci.high),
                      "]");
}

// Why an input keeps the table from deciding (row 3). `straddled` is empty
// before max_runs, when the CI is not consulted yet.
std::string NoiseReason(const InputDecision& in, const DecisionPolicy& policy,
                        const std::vector<DecidingThreshold>& straddled) {
  if (!in.measurable) {
    return absl::StrFormat(
        "input '%s' cannot be compared (%d baseline, %d candidate samples, "
        "medians %g vs %g)",
        in.input, in.baseline.n, in.candidate.n, in.baseline.median,
        in.candidate.median);
  }
  std::string reason = absl::StrFormat(
      "input '%s' too noisy: CV baseline %s, candidate %s > max %s after "
      "removing %d+%d outlier(s)",
      in.input, Pct(in.baseline.cv), Pct(in.candidate.cv), Pct(policy.max_cv),
      in.baseline_outliers_removed, in.candidate_outliers_removed);
  if (!straddled.empty()) {
    const bool estimate_outside =
        in.change < in.change_ci.low || in.change > in.change_ci.high;
    absl::StrAppend(&reason, ", and its ", CiText(in.change_ci),
                    estimate_outside ? absl::StrCat(" with its change ",
                                                    SignedPct(in.change))
                                     : "",
                    " straddles ", ThresholdList(straddled));
  }
  return reason;
}

// The note a verdict reached despite a noisy input carries.
std::string NoiseNote(const InputDecision& in, const DecisionPolicy& policy) {
  return absl::StrFormat(
      "input '%s' CV %s > %s but its %s lies wholly on one side of every "
      "deciding threshold",
      in.input, Pct(std::max(in.baseline.cv, in.candidate.cv)),
      Pct(policy.max_cv), CiText(in.change_ci));
}

// Fills the aggregate fields of `d` when every input is measurable: the
// weighted geometric mean of the ratios, its bootstrap CI and the weighted
// Stouffer Z of the tests.
void ComputeAggregate(const std::vector<double>& signed_z,
                      const std::vector<DecidedSamples>& samples,
                      const DecisionPolicy& policy, Decision* d) {
  if (d->inputs.empty()) return;
  for (const InputDecision& in : d->inputs)
    if (!in.measurable) return;
  double weight_sum = 0;
  double log_sum = 0;
  double z_sum = 0;
  double weight_sq_sum = 0;
  const bool weights_valid = std::all_of(
      d->inputs.begin(), d->inputs.end(),
      [](const auto& in) { return std::isfinite(in.weight) && in.weight > 0; });
  for (size_t i = 0; i < d->inputs.size(); ++i) {
    // Spec validation guarantees positive weights; fall back to equal weights
    // otherwise.
    const double w = weights_valid ? d->inputs[i].weight : 1.0;
    weight_sum += w;
    log_sum += w * std::log(d->inputs[i].candidate.median /
                            d->inputs[i].baseline.median);
    z_sum += w * signed_z[i];
    weight_sq_sum += w * w;
  }
  d->aggregate_measured = true;
  d->aggregate_change = std::expm1(log_sum / weight_sum);
  d->aggregate_improvement = policy.better == Better::kLower
                                 ? -d->aggregate_change
                                 : d->aggregate_change;
  d->aggregate_z = z_sum / std::sqrt(weight_sq_sum);
  std::vector<stats::RatioGroup> groups;
  for (size_t i = 0; i < d->inputs.size(); ++i) {
    groups.push_back({samples[i].candidate, samples[i].baseline,
                      weights_valid ? d->inputs[i].weight : 1.0});
  }
  // Its own stream, apart from the per-input ones (seed + i * golden ratio).
  const stats::Interval ratio_ci = stats::BootstrapWeightedMedianRatioCI(
      groups, policy.bootstrap_iterations, 0.95,
      policy.seed ^ 0xA5A5A5A5A5A5A5A5ULL);
  d->aggregate_change_ci = {ratio_ci.low - 1, ratio_ci.high - 1};
  d->aggregate_improvement_low = policy.better == Better::kLower
                                     ? -d->aggregate_change_ci.high
                                     : d->aggregate_change_ci.low;
  d->aggregate_p_value =
      d->inputs.size() == 1
          ? d->inputs[0].p_value  // identical, without a round trip
          : std::min(1.0, 2 * stats::NormalCdf(-std::fabs(d->aggregate_z)));
}

// Rows 4-8 of the table, on an aggregate that ComputeAggregate filled.
Decision ApplyMagnitudeRows(Decision d, const CandidateEvidence& evidence,
                            const DecisionPolicy& policy) {
  const double improvement = d.aggregate_improvement;
  const bool significant = d.aggregate_p_value < policy.alpha;
  const bool significant_gain = significant && d.aggregate_z > 0;
  const bool significant_loss = significant && d.aggregate_z < 0;
  const std::string summary =
      absl::StrFormat("%s aggregate (%s)", SignedPct(d.aggregate_change),
                      Direction(improvement));
  const std::string p_text =
      absl::StrFormat("%s %s %g", PValue(d.aggregate_p_value),
                      significant ? "<" : ">=", policy.alpha);

  // Row 4: regressions.
  const InputDecision* worst = nullptr;
  for (const InputDecision& in : d.inputs) {
    if (in.regressed &&
        (worst == nullptr || in.improvement < worst->improvement))
      worst = &in;
  }
  if (worst != nullptr) {
    return Finish(std::move(d), Verdict::kDiscard,
                  absl::StrFormat(
                      "input '%s' regresses %s (more than the %s allowed); %s",
                      worst->input, Pct(-worst->improvement),
                      Pct(policy.input_regression), summary));
  }
  if (improvement < 0 && significant_loss) {
    return Finish(
        std::move(d), Verdict::kDiscard,
        absl::StrCat(summary, ", ", p_text, ": significant regression"));
  }

  const bool reaches_keep =
      improvement >= policy.keep_threshold - kThresholdTolerance;
  const bool reaches_maybe =
      improvement >= policy.maybe_threshold - kThresholdTolerance;
  // A gain is claimed only when the aggregate's CI rules out the gains too
  // small to matter (DecisionPolicy::established_gain_fraction).
  const double gain_floor =
      policy.established_gain_fraction * policy.maybe_threshold;
  const bool gain_established =
      d.aggregate_improvement_low >= gain_floor - kThresholdTolerance;
  const std::string ci_text =
      absl::StrCat("its aggregate ", CiText(d.aggregate_change_ci),
                   gain_established ? " rules out" : " does not rule out",
                   " a gain under ", Pct(gain_floor));
  const std::string correct =
      d.inputs.size() == 1
          ? std::string("1 input correct")
          : absl::StrFormat("all %d inputs correct", d.inputs.size());
  // Row 5.
  if (reaches_keep && significant_gain && gain_established) {
    return Finish(std::move(d), Verdict::kKeep,
                  absl::StrFormat("%s >= keep %s, %s, %s", summary,
                                  Pct(policy.keep_threshold), p_text, correct));
  }
  // Row 6.
  if (reaches_maybe && !reaches_keep && significant_gain && gain_established) {
    return Finish(std::move(d), Verdict::kMaybe,
                  absl::StrFormat("%s between maybe %s and keep %s, %s, %s",
                                  summary, Pct(policy.maybe_threshold),
                                  Pct(policy.keep_threshold), p_text, correct));
  }
  // Row 7.
  if (reaches_keep) {
    std::vector<std::string> all;
    for (const InputDecision& in : d.inputs) all.push_back(in.input);
    return Inconclusive(
        std::move(d), evidence, std::move(all),
        significant_gain
            ? absl::StrFormat("%s >= keep %s, %s, but %s", summary,
                              Pct(policy.keep_threshold), p_text, ci_text)
            : absl::StrFormat("%s >= keep %s but not significant (%s)", summary,
                              Pct(policy.keep_threshold), p_text));
  }
  // Row 8.
  if (!reaches_maybe) {
    return Finish(
        std::move(d), Verdict::kDiscard,
        absl::StrFormat("%s is under the maybe threshold %s, %s", summary,
                        Pct(policy.maybe_threshold), p_text));
  }
  return Finish(
      std::move(d), Verdict::kDiscard,
      significant_gain
          ? absl::StrFormat("%s, %s, but %s", summary, p_text, ci_text)
          : absl::StrFormat("%s but not significant (%s)", summary, p_text));
}

}  // namespace

const char* VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kKeep:
      return "KEEP";
    case Verdict::kMaybe:
      return "MAYBE";
    case Verdict::kDiscard:
      return "DISCARD";
    case Verdict::kKill:
      return "KILL";
    case Verdict::kReject:
      return "REJECT";
    case Verdict::kInconclusive:
      return "INCONCLUSIVE";
  }
  return "UNKNOWN";
}

DecisionPolicy PolicyFor(const VerdictSpec& spec, Better better,
                         uint64_t seed) {
  DecisionPolicy policy;
  switch (spec.profile) {
    case DecisionProfile::kFirstPass:
      policy.keep_threshold = 0.05;
      policy.maybe_threshold = 0.02;
      break;
    case DecisionProfile::kOptimized:
      policy.keep_threshold = 0.02;
      policy.maybe_threshold = 0.01;
      break;
  }
  policy.alpha = spec.alpha;
  policy.max_cv = spec.max_cv;
  policy.input_regression = spec.input_regression;
  policy.better = better;
  policy.seed = seed;
  return policy;
}

std::vector<DecidingThreshold> DecidingThresholds(
    const DecisionPolicy& policy) {
  // improvement = -change for kLower, +change for kHigher.
  const double to_change = policy.better == Better::kLower ? -1.0 : 1.0;
  return {{"keep", to_change * policy.keep_threshold},
          {"maybe", to_change * policy.maybe_threshold},
          {"input_regression", -to_change * policy.input_regression}};
}

std::vector<DecidingThreshold> StraddledThresholds(
    const stats::Interval& change_ci, const DecisionPolicy& policy) {
  std::vector<DecidingThreshold> thresholds = DecidingThresholds(policy);
  // A CI that could not be computed says nothing about where the change lies.
  if (!std::isfinite(change_ci.low) || !std::isfinite(change_ci.high))
    return thresholds;
  std::erase_if(thresholds, [&](const DecidingThreshold& t) {
    return !(change_ci.low < t.change - kThresholdTolerance &&
             change_ci.high > t.change + kThresholdTolerance);
  });
  return thresholds;
}

// Why a noisy input whose CI clears every deciding threshold may decide: rows
// 4-8 read each input's median ratio and its Mann-Whitney evidence, the same
// statistics for noisy and quiet inputs, and never its CV. The noise shows up
// where it should: a wide spread weakens the input's rank test (its z moves
// towards 0), so noise can only make "significant" harder to reach, never
// easier. What noise can still do is move the input's median ratio, and so
// its side of a threshold; the CI bounds that move, and a CI wholly on one
// side of every deciding threshold means the input's own classification
// (and its row-4 regression test, which reads the point estimate: the span
// checked is widened to include it, since a percentile bootstrap CI almost
// always does but need not) is the same anywhere in it. A quiet input gets no
// such check at all: a CV just under max_cv with 10 runs can give a CI that
// straddles the keep threshold, and the table decides on it anyway. So such a
// verdict is at least as well founded as the same verdict on quiet inputs. What
// neither case checks is where the aggregate's own magnitude could lie (rows
// 5-7 compare its point estimate with keep/maybe): a noisy input with a large
// weight moves it as much as its CI allows, exactly as a quiet input moves it
// within its narrower one.
bool NoiseBlocksVerdict(const InputDecision& in, const DecisionPolicy& policy) {
  if (!in.measurable) return true;
  if (!in.still_flaky) return false;
  return !StraddledThresholds(CheckedSpan(in), policy).empty();
}

Verdict ClassifyInput(const InputDecision& in, bool output_differs,
                      const DecisionPolicy& policy) {
  if (output_differs) return Verdict::kReject;
  if (NoiseBlocksVerdict(in, policy)) return Verdict::kInconclusive;
  if (in.regressed) return Verdict::kDiscard;
  const bool significant = in.p_value < policy.alpha;
  if (significant &&
      in.improvement >= policy.keep_threshold - kThresholdTolerance)
    return Verdict::kKeep;
  if (significant &&
      in.improvement >= policy.maybe_threshold - kThresholdTolerance)
    return Verdict::kMaybe;
  return Verdict::kDiscard;
}

Decision Decide(const CandidateEvidence& evidence,
                const DecisionPolicy& policy) {
  Decision d;
  std::vector<double> signed_z;
  std::vector<DecidedSamples> samples(evidence.inputs.size());
  for (size_t i = 0; i < evidence.inputs.size(); ++i) {
    // A distinct, reproducible bootstrap stream per input (golden-ratio
    // increment).
    const uint64_t seed =
        policy.seed + static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ULL;
    double z = 0;
    d.inputs.push_back(
        AnalyzeInput(evidence.inputs[i], policy, seed, &z, &samples[i]));
    signed_z.push_back(z);
  }
  // The aggregate first, so that every verdict (REJECT, KILL and INCONCLUSIVE
  // included) reports what was measured.
  ComputeAggregate(signed_z, samples, policy, &d);

  // Row 1: correctness.
  if (evidence.correctness_failed) {
    return Finish(std::move(d), Verdict::kReject,
                  evidence.correctness_detail.empty()
                      ? "correctness check failed"
                      : absl::StrCat("correctness check failed: ",
                                     evidence.correctness_detail));
  }
  for (const InputSamples& in : evidence.inputs) {
    if (in.output_differs) {
      std::string reason = absl::StrFormat(
          "output differs from the baseline's on input '%s'", in.input);
      if (!in.output_detail.empty())
        absl::StrAppend(&reason, ": ", in.output_detail);
      return Finish(std::move(d), Verdict::kReject, std::move(reason));
    }
  }
  // Row 2: deadline.
  if (evidence.killed) {
    return Finish(
        std::move(d), Verdict::kKill,
        evidence.kill_detail.empty()
            ? "two runs in a row were slower than the baseline allows"
            : absl::StrCat(
                  "two runs in a row were slower than the baseline allows: ",
                  evidence.kill_detail));
  }
  if (d.inputs.empty()) {
    return Finish(std::move(d), Verdict::kInconclusive,
                  "no inputs were measured");
  }

  // Row 3: inputs that cannot be judged yet. Before max_runs every noisy or
  // unmeasurable input is extended; at max_runs only the ones that would make
  // the verdict depend on their noise block it (NoiseBlocksVerdict).
  std::vector<std::string> blocking;
  std::string first_block_reason;
  std::vector<std::string> noise_notes;
  for (const InputDecision& in : d.inputs) {
    if (in.measurable && !in.still_flaky) continue;
    if (!evidence.at_max_runs) {
      if (blocking.empty()) first_block_reason = NoiseReason(in, policy, {});
      blocking.push_back(in.input);
    } else if (NoiseBlocksVerdict(in, policy)) {
      if (blocking.empty()) {
        first_block_reason = NoiseReason(
            in, policy,
            in.measurable ? StraddledThresholds(CheckedSpan(in), policy)
                          : std::vector<DecidingThreshold>{});
      }
      blocking.push_back(in.input);
    } else {
      noise_notes.push_back(NoiseNote(in, policy));
    }
  }
  if (!blocking.empty()) {
    std::string why = first_block_reason;
    if (blocking.size() > 1)
      absl::StrAppend(&why, " (", blocking.size(), " inputs affected)");
    return Inconclusive(std::move(d), evidence, std::move(blocking), why);
  }

  // Rows 4-8; every input is measurable here, so the aggregate is set.
  Decision decided = ApplyMagnitudeRows(std::move(d), evidence, policy);
  if (!noise_notes.empty()) {
    absl::StrAppend(&decided.reason,
                    "; noisy: ", absl::StrJoin(noise_notes, "; "));
  }
  return decided;
}

std::optional<double> KillBoundNs(absl::Span<const double> baseline_wall_ns,
                                  double kill_factor,
                                  double pooled_slowest_ratio) {
  if (baseline_wall_ns.size() < kKillMinBaselineRuns) return std::nullopt;
  const stats::Summary base = stats::Summarize(baseline_wall_ns);
  const double robust_sigma = 1.4826 * base.mad;
  const double slowest = std::max(base.max, pooled_slowest_ratio * base.median);
  const double spread_bound =
      slowest + std::max(kKillSpreadSigmas * robust_sigma,
                         absl::ToDoubleNanoseconds(kKillMinMargin));
  return std::max(kill_factor * base.median, spread_bound);
}

double PooledSlowestRatio(
    const std::vector<std::vector<double>>& baseline_wall_ns_by_input) {
  double ratio = 0;
  for (const std::vector<double>& walls : baseline_wall_ns_by_input) {
    if (walls.size() < kKillMinBaselineRuns) continue;
    const double median = stats::Median(walls);
    if (!(median > 0)) continue;
    ratio =
        std::max(ratio, *std::max_element(walls.begin(), walls.end()) / median);
  }
  return ratio;
}

absl::Duration CandidateDeadline(absl::Span<const double> baseline_wall_ns,
                                 double kill_factor,
                                 absl::Duration absolute_timeout,
                                 double pooled_slowest_ratio) {
  const std::optional<double> bound =
      KillBoundNs(baseline_wall_ns, kill_factor, pooled_slowest_ratio);
  if (!bound) return absolute_timeout;
  return std::min(absl::Nanoseconds(std::llround(*bound)), absolute_timeout);
}

bool CountsTowardKill(const KillRun& run,
                      absl::Span<const double> baseline_wall_ns,
                      double kill_factor, double pooled_slowest_ratio) {
  if (run.hit_absolute_timeout) return true;
  if (run.host_flagged) return false;
  const std::optional<double> bound =
      KillBoundNs(baseline_wall_ns, kill_factor, pooled_slowest_ratio);
  return bound.has_value() && run.wall_ns > *bound;
}

}  // namespace benchfleet::verdict
