// The decision engine: turns one candidate's measured evidence (per-input
// samples of the primary metric for the candidate and the baseline, measured in
// the same attempt on the same host, plus correctness and kill outcomes) into a
// verdict — KEEP, MAYBE, DISCARD, KILL, REJECT or INCONCLUSIVE — following
// DESIGN.md §4 and METHODOLOGY.md §4.5-4.6. Used by the controller's attempt
// driver (which also asks CandidateDeadline for run deadlines and extends runs
// when a Decision says needs_more_runs) and by reports. Pure functions of their
// arguments: no I/O, no clock, deterministic for a given seed. Thread-safe.
#ifndef BENCHFLEET_CONTROLLER_VERDICT_VERDICT_H_
#define BENCHFLEET_CONTROLLER_VERDICT_VERDICT_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/spec.h"
#include "controller/stats/stats.h"

namespace benchfleet::verdict {

enum class Verdict { kKeep, kMaybe, kDiscard, kKill, kReject, kInconclusive };

// "KEEP", "MAYBE", "DISCARD", "KILL", "REJECT" or "INCONCLUSIVE"; never null.
const char* VerdictName(Verdict v);

// Thresholds are compared with this slack, in the direction that lets a value
// that is "exactly" a threshold reach it despite rounding (95.0/100.0 - 1 !=
// -0.05 in binary).
inline constexpr double kThresholdTolerance = 1e-9;

// Outliers are values beyond kOutlierSigmas robust sigmas (1.4826 * MAD) of the
// median.
inline constexpr double kOutlierSigmas = 2.0;

// One input's measurements of the primary metric.
struct InputSamples {
  std::string input;
  double weight = 1.0;            // relative input frequency, > 0
  std::vector<double> baseline;   // primary metric per measured baseline run
  std::vector<double> candidate;  // primary metric per measured candidate run
  bool output_differs = false;  // candidate output differs from the baseline's
  std::string output_detail;    // what differed, for the reason line
};

// Everything known about one candidate variant at decision time.
struct CandidateEvidence {
  std::string variant;
  // The correctness command failed, or a measured run exited non-zero.
  bool correctness_failed = false;
  std::string correctness_detail;
  // Two of its runs in a row counted toward KILL (CountsTowardKill).
  bool killed = false;
  std::string kill_detail;
  // True when runs cannot be extended any further (n reached max_runs).
  bool at_max_runs = false;
  std::vector<InputSamples> inputs;
};

// The knobs of the decision table. Fractions, not percent (5% -> 0.05).
struct DecisionPolicy {
  double keep_threshold = 0.05;   // first-pass 5%, optimized 2%
  double maybe_threshold = 0.02;  // first-pass 2%, optimized 1%
  double alpha = 0.05;            // significant means p < alpha (strictly)
  double max_cv = 0.10;           // noisy means CV > max_cv (strictly)
  double input_regression =
      0.05;  // an input regressing by more than this discards
  Better better = Better::kLower;
  uint64_t seed = 0;  // bootstrap seed
  int bootstrap_iterations = 2000;
  // KEEP and MAYBE claim a gain, so they need more than p < alpha: the
  // aggregate's 95% bootstrap CI must also rule out every gain under this
  // fraction of the maybe threshold (first-pass: under 1%), the gains too
  // small to matter. p < alpha alone is met by an identical copy in alpha/2
  // of its trials by definition; with the floor a copy of the baseline
  // practically never reaches MAYBE, while a real 3% gain measured to +-1%
  // still does. Which of KEEP and MAYBE stays the point estimate's call, as
  // the methodology defines them. 0 keeps only the CI's side of zero.
  double established_gain_fraction = 0.5;
};

// The policy for a spec's `verdict:` block: the profile picks the thresholds
// (kFirstPass: keep 5%, maybe 2%; kOptimized: keep 2%, maybe 1%); alpha, max_cv
// and input_regression are copied; `better` is the primary metric's direction.
DecisionPolicy PolicyFor(const VerdictSpec& spec, Better better, uint64_t seed);

// The analysis of one input.
struct InputDecision {
  std::string input;
  double weight = 1;
  // Summaries of the samples the decision used: after outlier removal when the
  // flaky path ran, the raw samples otherwise.
  stats::Summary baseline;
  stats::Summary candidate;
  double change = 0;  // candidate median / baseline median - 1
  double improvement =
      0;  // -change for Better::kLower, +change for kHigher (> 0 = better)
  stats::Interval change_ci;  // 95% bootstrap CI of `change` (of ratio - 1, not
                              // improvement)
  double p_value = 1;         // two-sided Mann-Whitney U, candidate vs baseline
  double welch_p_value = 1;   // two-sided Welch t, reported beside it
  size_t baseline_outliers_removed = 0;
  size_t candidate_outliers_removed = 0;
  bool flaky = false;  // raw CV > max_cv in either group (outlier removal ran)
  bool still_flaky =
      false;  // CV > max_cv in either group even after outlier removal
  // False when the input cannot be compared: fewer than 2 samples in a group,
  // or a median that is not a positive finite number. change/improvement/p are
  // then unset.
  bool measurable = false;
  bool regressed = false;  // improvement < -input_regression
};

// A threshold of the decision table that separates one verdict from another,
// expressed on the scale of InputDecision::change (ratio - 1), so it can be
// compared with a change CI directly.
struct DecidingThreshold {
  const char* name = "";  // "keep", "maybe" or "input_regression"
  double change = 0;      // e.g. -0.05 for keep 5% with Better::kLower
};

// The thresholds that decide a verdict, in this order: keep and maybe on the
// improvement side, input_regression on the regression side. With
// Better::kLower an improvement is a negative change (keep 5% -> -0.05,
// input_regression 5% -> +0.05); with Better::kHigher the signs flip.
std::vector<DecidingThreshold> DecidingThresholds(const DecisionPolicy& policy);

// The deciding thresholds (see DecidingThresholds, same order) that
// `change_ci` straddles: lies on both sides of, by more than
// kThresholdTolerance. Empty when the CI lies wholly on one side of every one.
// A CI with a bound that is not finite straddles every threshold.
std::vector<DecidingThreshold> StraddledThresholds(
    const stats::Interval& change_ci, const DecisionPolicy& policy);

// The noise rule of DESIGN.md §4 for one analysed input, once runs cannot be
// extended: an input that is not measurable blocks a verdict; a measurable one
// that is still noisy (CV > max_cv after outlier removal) blocks it only when
// its change CI straddles a deciding threshold. Quiet inputs never block.
bool NoiseBlocksVerdict(const InputDecision& in, const DecisionPolicy& policy);

// The per-input classification reports show beside the aggregate verdict, with
// the same thresholds and noise rule: REJECT when the output differs,
// INCONCLUSIVE when NoiseBlocksVerdict, DISCARD when the input regressed, KEEP
// or MAYBE when the improvement reaches that threshold with p < alpha, DISCARD
// otherwise. Never KILL.
Verdict ClassifyInput(const InputDecision& in, bool output_differs,
                      const DecisionPolicy& policy);

// The verdict on one candidate and the numbers behind it.
struct Decision {
  Verdict verdict = Verdict::kInconclusive;
  // One human-readable line with the numbers, e.g.
  // "-12.3% aggregate (12.3% better), p=1.08e-05 < 0.05, all 5 inputs correct".
  // A verdict reached despite a noisy input ends with a noise note:
  // "...; noisy: input 'big' CV 12.4% > 10.0% but its 95% CI [-41.0%, -20.3%]
  // is wholly past every deciding threshold".
  std::string reason;
  // True when the aggregate fields below were computed: there is at least one
  // input and every input is measurable. They are computed before any row is
  // applied, so they hold for every verdict, REJECT, KILL and INCONCLUSIVE
  // included; when false they keep their defaults (0 change, p = 1).
  bool aggregate_measured = false;
  double aggregate_change =
      0;  // weighted geometric mean of per-input ratios, minus 1
  double aggregate_improvement =
      0;  // sign-adjusted like InputDecision::improvement
  // Weighted Stouffer combination of the per-input Mann-Whitney tests: each
  // input's two-sided p becomes a signed z (positive when the candidate ranks
  // better), Z = sum(w_i z_i) / sqrt(sum(w_i^2)), and this is the two-sided p
  // of Z. With one input it is that input's p_value. "Significant" additionally
  // requires Z to point the same way as aggregate_improvement.
  double aggregate_p_value = 1;
  double aggregate_z =
      0;  // the combined Z above (> 0: the candidate ranks better)
  // 95% bootstrap CI of aggregate_change (stats::
  // BootstrapWeightedMedianRatioCI over the samples the inputs decided on,
  // minus 1); NaN bounds when the aggregate was not measured.
  stats::Interval aggregate_change_ci = {
      std::numeric_limits<double>::quiet_NaN(),
      std::numeric_limits<double>::quiet_NaN()};
  // The lower bound of that CI on the improvement scale (sign-adjusted like
  // aggregate_improvement); NaN when not measured.
  double aggregate_improvement_low = std::numeric_limits<double>::quiet_NaN();
  // The verdict would be INCONCLUSIVE but runs can still be extended: the
  // caller should extend `inputs_to_extend` to max_runs and decide again.
  // `verdict` is kInconclusive.
  bool needs_more_runs = false;
  std::vector<std::string> inputs_to_extend;
  std::vector<InputDecision> inputs;  // one per evidence input, same order
};

// Applies the decision table of DESIGN.md §4, first matching row wins:
//  1. correctness failed, or output differs on any input          -> REJECT
//  2. killed                                                        -> KILL
//  3. an input is not measurable, or is still noisy (CV > max_cv) after
//     outlier removal:
//     - before max_runs -> INCONCLUSIVE, needs_more_runs (those inputs);
//     - at max_runs -> INCONCLUSIVE when an input is not measurable or a noisy
//       input's change CI straddles a deciding threshold (NoiseBlocksVerdict);
//       otherwise the table goes on and the reason gets a noise note
//  4. an input regresses by more than input_regression, or the aggregate
//     regresses significantly                                       -> DISCARD
//  5. aggregate improvement >= keep threshold, significant, gain
//     established                                                   -> KEEP
//  6. aggregate improvement in [maybe, keep), significant, gain
//     established                                                   -> MAYBE
//  7. aggregate improvement >= keep threshold, not significant or gain not
//     established -> INCONCLUSIVE; needs_more_runs (all inputs) unless
//     at_max_runs
// "Gain established": aggregate_improvement_low >= established_gain_fraction
// x maybe_threshold (see DecisionPolicy).
//  8. anything else                                                 -> DISCARD
// Evidence with no inputs (and no REJECT/KILL) is INCONCLUSIVE.
// Per-input analysis, and the aggregate when every input is measurable, are
// filled in for every verdict, so reports can show the numbers.
Decision Decide(const CandidateEvidence& evidence,
                const DecisionPolicy& policy);

// KILL is an early stop, never a reading of noise (DESIGN.md §4). A candidate
// run on an input counts toward KILL only when (a) it is slower than
// kill_factor x the baseline median on that input, (b) it is slower than the
// baseline's own spread allows: the slowest baseline run so far plus
// max(kKillSpreadSigmas robust sigmas (1.4826 * MAD), kKillMinMargin), and
// (c) the host did not flag it (throttled, frequency drop, contended). A run
// that hit the spec's absolute timeout counts whatever the host did: that is a
// hang, not noise.
//
// kKillMinMargin is not in the methodology: it is the floor of the spread
// allowance, because a process cannot be timed or stopped more finely than the
// scheduler lets it run (timer slack, wake-up latency, a hypervisor's steal of
// a few milliseconds). Without it a sub-millisecond program with a tight
// baseline would have a bound inside that jitter. It costs nothing where KILL
// matters: on programs long enough for KILL to save time, (a) and 4 sigma are
// far larger.
inline constexpr double kKillSpreadSigmas = 4.0;
inline constexpr absl::Duration kKillMinMargin = absl::Milliseconds(2);
// Baseline runs (warmups included: they only widen the spread) an input needs
// before its bound exists; before that, only the spec's absolute timeout
// bounds a candidate run.
inline constexpr size_t kKillMinBaselineRuns = 3;

// The bound above for one input, in nanoseconds: max((a), (b)), given the
// baseline's wall times on that input so far; nullopt with fewer than
// kKillMinBaselineRuns values. `pooled_slowest_ratio` (0 = none) is the
// baseline's slowest run relative to its input's median over all its inputs
// (PooledSlowestRatio): the same program on the same host meets the same
// disturbances on every input, so a burst the baseline met on one input
// widens (b) on all of them: the slowest run is taken as at least
// pooled_slowest_ratio x this input's median.
std::optional<double> KillBoundNs(absl::Span<const double> baseline_wall_ns,
                                  double kill_factor,
                                  double pooled_slowest_ratio = 0);

// max over inputs with at least kKillMinBaselineRuns runs of (slowest run /
// median); 0 when there is none.
double PooledSlowestRatio(
    const std::vector<std::vector<double>>& baseline_wall_ns_by_input);

// The deadline at which the agent stops a candidate run on an input: the kill
// bound capped at `absolute_timeout`, or `absolute_timeout` while there is no
// bound yet. Exact to the nanosecond; the wire carries microseconds, rounded
// up.
absl::Duration CandidateDeadline(absl::Span<const double> baseline_wall_ns,
                                 double kill_factor,
                                 absl::Duration absolute_timeout,
                                 double pooled_slowest_ratio = 0);

// One candidate run as the KILL rule sees it.
struct KillRun {
  double wall_ns = 0;
  bool hit_absolute_timeout = false;  // stopped at the spec's `timeout`
  bool host_flagged = false;          // throttled, frequency drop, contended
};

// Whether `run` counts toward KILL against the baseline's wall times on its
// input so far (rules (a)-(c) above): a hang always; a flagged run never;
// any other run (finished, or stopped by the agent at the bound of its time)
// when it is slower than the bound the baseline gives now. Without a bound
// yet, only a hang counts. Pure;
// used by the attempt driver after every result (a run that finished before
// the baseline had a bound is judged again once it has one).
bool CountsTowardKill(const KillRun& run,
                      absl::Span<const double> baseline_wall_ns,
                      double kill_factor, double pooled_slowest_ratio = 0);

}  // namespace benchfleet::verdict

#endif  // BENCHFLEET_CONTROLLER_VERDICT_VERDICT_H_
