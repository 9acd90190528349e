// The verdict decision table (DESIGN.md §4), row by row, its boundaries, the
// aggregate across inputs and the KILL deadline. The noise rows are in
// verdict_noise_test.cc.
#include "controller/verdict/verdict.h"

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tests/controller/verdict_testing.h"

namespace benchfleet::verdict {
namespace {

using namespace testing_helpers;  // NOLINT(build/namespaces): test helpers

// --- Row 1: REJECT
// ---------------------------------------------------------------------

TEST(VerdictTest, RejectsWhenCorrectnessCommandFails) {
  CandidateEvidence e = ScaledEvidence(0.8);
  e.correctness_failed = true;
  e.correctness_detail = "exit status 3";
  const Decision d = Decide(e, FirstPass());
  EXPECT_EQ(d.verdict, Verdict::kReject);
  EXPECT_THAT(d.reason, HasSubstr("exit status 3"));
  EXPECT_FALSE(d.needs_more_runs);
}

TEST(VerdictTest, RejectsWhenCandidateOutputDiffers) {
  CandidateEvidence e = FiveInputs(0.8);
  e.inputs[2].output_differs = true;
  e.inputs[2].output_detail = "line 4: 17 != 18";
  const Decision d = Decide(e, FirstPass());
  EXPECT_EQ(d.verdict, Verdict::kReject);
  EXPECT_THAT(d.reason, HasSubstr("'c'"));
  EXPECT_THAT(d.reason, HasSubstr("line 4: 17 != 18"));
}

TEST(VerdictTest, RejectTakesPrecedenceOverKill) {
  CandidateEvidence e = ScaledEvidence(0.8);
  e.killed = true;
  e.inputs[0].output_differs = true;
  EXPECT_EQ(Decide(e, FirstPass()).verdict, Verdict::kReject);
}

TEST(VerdictTest, FillsPerInputNumbersEvenWhenRejecting) {
  CandidateEvidence e = ScaledEvidence(0.8);
  e.correctness_failed = true;
  const Decision d = Decide(e, FirstPass());
  ASSERT_EQ(d.inputs.size(), 1u);
  EXPECT_NEAR(d.inputs[0].change, -0.2, 1e-12);
  EXPECT_EQ(d.inputs[0].baseline.n, 11u);
}

// --- Row 2: KILL
// -----------------------------------------------------------------------

TEST(VerdictTest, KillsWhenDeadlineHitTwiceInARow) {
  CandidateEvidence e = ScaledEvidence(0.8);
  e.killed = true;
  e.kill_detail = "2 runs past 1.10s";
  const Decision d = Decide(e, FirstPass());
  EXPECT_EQ(d.verdict, Verdict::kKill);
  EXPECT_THAT(d.reason, HasSubstr("2 runs past 1.10s"));
}

TEST(VerdictTest, KillTakesPrecedenceOverNoise) {
  CandidateEvidence e;
  e.killed = true;
  e.inputs.push_back(Input("noisy", Around(100, 11, 6), Around(100, 11, 6)));
  EXPECT_EQ(Decide(e, FirstPass()).verdict, Verdict::kKill);
}

// --- Row 4: regressions
// ----------------------------------------------------------------

TEST(VerdictTest, DiscardsWhenAnInputRegressesDespiteNetImprovement) {
  CandidateEvidence e;
  e.inputs.push_back(
      Input("slow", QuietBaseline(), Scaled(QuietBaseline(), 1.08), 1));
  e.inputs.push_back(
      Input("fast", QuietBaseline(), Scaled(QuietBaseline(), 0.70), 3));
  const Decision d = Decide(e, FirstPass());
  EXPECT_GT(d.aggregate_improvement, 0.05);
  EXPECT_EQ(d.verdict, Verdict::kDiscard);
  EXPECT_THAT(d.reason, HasSubstr("'slow'"));
  EXPECT_THAT(d.reason, HasSubstr("8.0%"));
  EXPECT_TRUE(d.inputs[0].regressed);
  EXPECT_FALSE(d.inputs[1].regressed);
}

CandidateEvidence RegressionAndWin(double slow_factor) {
  CandidateEvidence e;
  e.inputs.push_back(
      Input("slow", QuietBaseline(), Scaled(QuietBaseline(), slow_factor), 1));
  e.inputs.push_back(
      Input("fast", QuietBaseline(), Scaled(QuietBaseline(), 0.80), 3));
  return e;
}

TEST(VerdictTest, InputRegressionOfExactlyTheLimitIsAllowed) {
  const Decision d = Decide(RegressionAndWin(1.05), FirstPass());
  EXPECT_FALSE(d.inputs[0].regressed);
  EXPECT_EQ(d.verdict, Verdict::kKeep) << d.reason;
}

TEST(VerdictTest, InputRegressionJustOverTheLimitDiscards) {
  const Decision d = Decide(RegressionAndWin(1.051), FirstPass());
  EXPECT_TRUE(d.inputs[0].regressed);
  EXPECT_EQ(d.verdict, Verdict::kDiscard);
}

TEST(VerdictTest, DiscardsSignificantAggregateRegression) {
  // Every input 3% slower: under the per-input limit, but significant overall.
  const Decision d = Decide(FiveInputs(1.03), FirstPass());
  EXPECT_EQ(d.verdict, Verdict::kDiscard);
  EXPECT_THAT(d.reason, HasSubstr("significant regression"));
  EXPECT_NEAR(d.aggregate_change, 0.03, 1e-12);
  EXPECT_LT(d.aggregate_z, 0);
  EXPECT_LT(d.aggregate_p_value, 0.05);
}

// --- Rows 5 and 6: KEEP and MAYBE
// --------------------------------------------------------

TEST(VerdictTest, KeepsSignificantImprovementAboveKeepThreshold) {
  const Decision d = Decide(FiveInputs(0.88), FirstPass());
  EXPECT_EQ(d.verdict, Verdict::kKeep);
  EXPECT_NEAR(d.aggregate_change, -0.12, 1e-12);
  EXPECT_NEAR(d.aggregate_improvement, 0.12, 1e-12);
  EXPECT_LT(d.aggregate_p_value, 1e-6);
  EXPECT_THAT(d.reason, HasSubstr("-12.0% aggregate"));
  EXPECT_THAT(d.reason, HasSubstr("all 5 inputs correct"));
  EXPECT_FALSE(d.needs_more_runs);
  for (const InputDecision& in : d.inputs) {
    EXPECT_NEAR(in.change, -0.12, 1e-12);
    EXPECT_LT(in.p_value, 1e-5);
    EXPECT_LT(in.welch_p_value, 1e-5);
    EXPECT_LE(in.change_ci.low, in.change);
    EXPECT_GE(in.change_ci.high, in.change);
  }
}

TEST(VerdictTest, MaybeForSignificantImprovementBetweenThresholds) {
  const Decision d = Decide(ScaledEvidence(0.97), FirstPass());
  EXPECT_EQ(d.verdict, Verdict::kMaybe) << d.reason;
  EXPECT_NEAR(d.aggregate_improvement, 0.03, 1e-12);
}

// A gain is claimed only when the aggregate CI rules out the gains too small
// to matter: p < alpha alone is reached by an identical copy in alpha/2 of its
// trials.
TEST(VerdictTest, MaybeRangeGainWhoseCiReachesUnderTheFloorDiscards) {
  CandidateEvidence e;
  e.at_max_runs = true;
  e.inputs.push_back(Input("in", Around(100, 41, 0.5), Around(97, 41, 0.5)));
  const Decision d = Decide(e, FirstPass());
  ASSERT_NEAR(d.aggregate_improvement, 0.03, 1e-12);
  ASSERT_LT(d.aggregate_p_value, 0.05);
  ASSERT_LT(d.aggregate_improvement_low, 0.01);
  EXPECT_EQ(d.verdict, Verdict::kDiscard) << d.reason;
  EXPECT_THAT(d.reason, HasSubstr("does not rule out a gain under 1.0%"));
  // The same change measured tightly is a MAYBE.
  EXPECT_EQ(Decide(ScaledEvidence(0.97), FirstPass()).verdict, Verdict::kMaybe);
}

TEST(VerdictTest, KeepRangeGainWhoseCiReachesUnderTheFloorIsExtended) {
  CandidateEvidence e;
  e.inputs.push_back(
      Input("in", Around(100, 41, 0.75), Around(94.5, 41, 0.75)));
  const Decision d = Decide(e, FirstPass());
  ASSERT_NEAR(d.aggregate_improvement, 0.055, 1e-12);
  ASSERT_LT(d.aggregate_p_value, 0.05);
  ASSERT_LT(d.aggregate_improvement_low, 0.01);
  EXPECT_EQ(d.verdict, Verdict::kInconclusive) << d.reason;
  EXPECT_TRUE(d.needs_more_runs);
  EXPECT_THAT(d.reason, HasSubstr("does not rule out a gain under 1.0%"));
  e.at_max_runs = true;
  const Decision at_max = Decide(e, FirstPass());
  EXPECT_EQ(at_max.verdict, Verdict::kInconclusive);
  EXPECT_FALSE(at_max.needs_more_runs);
  // The same change measured tightly keeps.
  EXPECT_EQ(Decide(ScaledEvidence(0.945), FirstPass()).verdict, Verdict::kKeep);
}

TEST(VerdictTest, AggregateCiBracketsTheAggregateChange) {
  const Decision d = Decide(FiveInputs(0.88), FirstPass());
  EXPECT_LE(d.aggregate_change_ci.low, d.aggregate_change);
  EXPECT_GE(d.aggregate_change_ci.high, d.aggregate_change);
  EXPECT_GT(d.aggregate_change_ci.high, -0.13);
  EXPECT_LT(d.aggregate_change_ci.low, -0.11);
  EXPECT_DOUBLE_EQ(d.aggregate_improvement_low, -d.aggregate_change_ci.high);
  // Not measured: NaN, never a made-up interval.
  CandidateEvidence e;
  e.inputs.push_back(Input("in", {100}, {90}));
  const Decision unmeasured = Decide(e, FirstPass());
  EXPECT_FALSE(unmeasured.aggregate_measured);
  EXPECT_TRUE(std::isnan(unmeasured.aggregate_change_ci.low));
  EXPECT_TRUE(std::isnan(unmeasured.aggregate_improvement_low));
}

// --- Row 7: big but not significant
// ------------------------------------------------------

TEST(VerdictTest, LargeButNotSignificantRequestsMoreRunsBeforeMaxRuns) {
  // 3 vs 3, fully separated: the smallest possible exact p is 0.1.
  CandidateEvidence e;
  e.inputs.push_back(Input("in", {100, 101, 99}, {90, 91, 89}));
  const Decision d = Decide(e, FirstPass());
  EXPECT_NEAR(d.aggregate_p_value, 0.1, 1e-12);
  EXPECT_EQ(d.verdict, Verdict::kInconclusive);
  EXPECT_TRUE(d.needs_more_runs);
  EXPECT_THAT(d.inputs_to_extend, ElementsAre("in"));
}

TEST(VerdictTest, LargeButNotSignificantExtendsEveryInput) {
  // 2 vs 2 on two inputs: exact p = 1/3 each, combined p ~0.17.
  CandidateEvidence e;
  e.inputs.push_back(Input("x", {100, 101}, {90, 91}));
  e.inputs.push_back(Input("y", {50, 51}, {45, 46}));
  const Decision d = Decide(e, FirstPass());
  EXPECT_GT(d.aggregate_p_value, 0.05);
  EXPECT_TRUE(d.needs_more_runs);
  EXPECT_THAT(d.inputs_to_extend, ElementsAre("x", "y"));
}

TEST(VerdictTest, LargeButNotSignificantIsInconclusiveAtMaxRuns) {
  CandidateEvidence e;
  e.at_max_runs = true;
  e.inputs.push_back(Input("in", {100, 101, 99}, {90, 91, 89}));
  const Decision d = Decide(e, FirstPass());
  EXPECT_EQ(d.verdict, Verdict::kInconclusive);
  EXPECT_FALSE(d.needs_more_runs);
  EXPECT_THAT(d.inputs_to_extend, IsEmpty());
}

// --- Row 8: DISCARD
// ------------------------------------------------------------------------

TEST(VerdictTest, DiscardsSignificantImprovementUnderMaybeThreshold) {
  const Decision d = Decide(ScaledEvidence(0.99), FirstPass());
  EXPECT_LT(d.aggregate_p_value, 0.05);
  EXPECT_EQ(d.verdict, Verdict::kDiscard);
  EXPECT_THAT(d.reason, HasSubstr("under the maybe threshold"));
}

TEST(VerdictTest, DiscardsNonSignificantMaybeRangeChange) {
  CandidateEvidence e;
  e.inputs.push_back(Input("in", {100, 101, 99}, {97, 97.5, 96.5}));
  const Decision d = Decide(e, FirstPass());
  EXPECT_EQ(d.verdict, Verdict::kDiscard);
  EXPECT_FALSE(d.needs_more_runs);
  EXPECT_THAT(d.reason, HasSubstr("not significant"));
}

TEST(VerdictTest, DiscardsNoChange) {
  const Decision d = Decide(ScaledEvidence(1.0), FirstPass());
  EXPECT_EQ(d.verdict, Verdict::kDiscard);
  EXPECT_EQ(d.aggregate_change, 0);
  EXPECT_EQ(d.aggregate_p_value, 1);
}

// --- Boundaries
// ----------------------------------------------------------------------------

TEST(VerdictTest, ExactlyKeepThresholdKeeps) {
  EXPECT_EQ(Decide(ScaledEvidence(0.95), FirstPass()).verdict, Verdict::kKeep);
  // Medians 90.1 -> 85.595 are exactly 5% in decimal, but 85.595/90.1 - 1
  // rounds to -0.04999999999999993 in binary: only the tolerance makes this
  // reach the threshold.
  CandidateEvidence e;
  e.inputs.push_back(
      Input("in", Around(90.1, 11, 0.1), Around(85.595, 11, 0.1)));
  const Decision d = Decide(e, FirstPass());
  ASSERT_LT(d.aggregate_improvement, 0.05);
  EXPECT_EQ(d.verdict, Verdict::kKeep) << d.reason;
}

TEST(VerdictTest, JustBelowKeepThresholdIsMaybe) {
  EXPECT_EQ(Decide(ScaledEvidence(0.9505), FirstPass()).verdict,
            Verdict::kMaybe);
}

TEST(VerdictTest, ExactlyMaybeThresholdIsMaybe) {
  EXPECT_EQ(Decide(ScaledEvidence(0.98), FirstPass()).verdict, Verdict::kMaybe);
  // 88.298/90.1 - 1 rounds to just above -0.02 (see ExactlyKeepThresholdKeeps).
  CandidateEvidence e;
  e.inputs.push_back(
      Input("in", Around(90.1, 11, 0.1), Around(88.298, 11, 0.1)));
  const Decision d = Decide(e, FirstPass());
  ASSERT_LT(d.aggregate_improvement, 0.02);
  EXPECT_EQ(d.verdict, Verdict::kMaybe) << d.reason;
}

TEST(VerdictTest, JustBelowMaybeThresholdDiscards) {
  EXPECT_EQ(Decide(ScaledEvidence(0.9805), FirstPass()).verdict,
            Verdict::kDiscard);
}

// 10% better, but the groups overlap so the p-value is moderate.
CandidateEvidence OverlappingTenPercent() {
  CandidateEvidence e;
  e.inputs.push_back(Input("in", Around(100, 11, 2), Around(90, 11, 2)));
  return e;
}

TEST(VerdictTest, PExactlyAlphaIsNotSignificant) {
  DecisionPolicy policy = FirstPass();
  const Decision first = Decide(OverlappingTenPercent(), policy);
  ASSERT_EQ(first.verdict, Verdict::kKeep) << first.reason;
  const double p = first.aggregate_p_value;
  ASSERT_GT(p, 1e-4);
  ASSERT_LT(p, 0.05);

  policy.alpha = p;
  const Decision at_alpha = Decide(OverlappingTenPercent(), policy);
  EXPECT_EQ(at_alpha.aggregate_p_value, p);
  EXPECT_EQ(at_alpha.verdict, Verdict::kInconclusive);
  EXPECT_TRUE(at_alpha.needs_more_runs);

  policy.alpha = std::nextafter(p, 1.0);
  EXPECT_EQ(Decide(OverlappingTenPercent(), policy).verdict, Verdict::kKeep);
}

// 30% better, well separated, with CV ~7-9.5% in each group.
CandidateEvidence SpreadButSeparated() {
  CandidateEvidence e;
  e.inputs.push_back(Input("in", Around(100, 11, 2), Around(70, 11, 2)));
  return e;
}

TEST(VerdictTest, CvExactlyMaxCvIsNotFlaky) {
  const CandidateEvidence e = SpreadButSeparated();
  const double cv = std::max(stats::Summarize(e.inputs[0].baseline).cv,
                             stats::Summarize(e.inputs[0].candidate).cv);
  DecisionPolicy policy = FirstPass();
  policy.max_cv = cv;
  const Decision d = Decide(e, policy);
  EXPECT_FALSE(d.inputs[0].flaky);
  EXPECT_EQ(d.verdict, Verdict::kKeep) << d.reason;

  policy.max_cv = cv - 1e-6;
  const Decision noisy = Decide(e, policy);
  EXPECT_TRUE(noisy.inputs[0].flaky);
  EXPECT_TRUE(noisy.inputs[0].still_flaky);
  EXPECT_EQ(noisy.verdict, Verdict::kInconclusive);
  EXPECT_TRUE(noisy.needs_more_runs);
}

// --- Aggregate, direction, policy
// ------------------------------------------------------------

TEST(VerdictTest, AggregateIsWeightedGeometricMeanOfRatios) {
  CandidateEvidence e;
  e.inputs.push_back(
      Input("big", QuietBaseline(), Scaled(QuietBaseline(), 0.8), 3));
  e.inputs.push_back(Input("small", Scaled(QuietBaseline(), 0.5),
                           Scaled(QuietBaseline(), 0.5 * 0.9), 1));
  const Decision d = Decide(e, FirstPass());
  const double expected =
      std::exp((3 * std::log(0.8) + std::log(0.9)) / 4) - 1;  // -0.17456
  EXPECT_NEAR(d.aggregate_change, expected, 1e-12);
  EXPECT_GT(std::fabs(d.aggregate_change - (-0.175)),
            1e-4);  // not the arithmetic mean
  EXPECT_EQ(d.verdict, Verdict::kKeep);
}

TEST(VerdictTest, AggregatePValueIsWeightedStouffer) {
  CandidateEvidence e;
  e.inputs.push_back(Input("x", {100, 101, 99}, {90, 91, 89}, 1));  // p = 0.1
  e.inputs.push_back(Input("y", {100, 101}, {90, 91}, 2));          // p = 1/3
  const Decision d = Decide(e, FirstPass());
  // Worked out independently (Python's statistics.NormalDist and math.erfc):
  // z1 = Phi^-1(1 - 0.1/2) = 1.6448536269514726,
  // z2 = Phi^-1(1 - (1/3)/2) = 0.9674215661017014,
  // z = (1 * z1 + 2 * z2) / sqrt(1 + 4), p = erfc(z / sqrt(2)).
  EXPECT_NEAR(d.aggregate_z, 1.6008890584611986, 1e-9);
  EXPECT_NEAR(d.aggregate_p_value, 0.10940149342474098, 1e-9);
}

TEST(VerdictTest, HigherIsBetterFlipsTheSign) {
  DecisionPolicy policy = FirstPass();
  policy.better = Better::kHigher;
  const Decision higher = Decide(ScaledEvidence(1.10), policy);
  EXPECT_EQ(higher.verdict, Verdict::kKeep) << higher.reason;
  EXPECT_NEAR(higher.aggregate_change, 0.10, 1e-12);
  EXPECT_NEAR(higher.aggregate_improvement, 0.10, 1e-12);
  EXPECT_NEAR(higher.inputs[0].improvement, 0.10, 1e-12);
  EXPECT_GT(higher.aggregate_z, 0);

  const Decision lower = Decide(ScaledEvidence(1.10), FirstPass());
  EXPECT_EQ(lower.verdict, Verdict::kDiscard);
  EXPECT_NEAR(lower.aggregate_improvement, -0.10, 1e-12);
  EXPECT_TRUE(lower.inputs[0].regressed);
}

TEST(VerdictTest, OptimizedProfileKeepsTwoPercent) {
  VerdictSpec spec;
  spec.profile = DecisionProfile::kOptimized;
  const DecisionPolicy policy = PolicyFor(spec, Better::kLower, 1);
  EXPECT_EQ(Decide(ScaledEvidence(0.98), policy).verdict, Verdict::kKeep);
  EXPECT_EQ(Decide(ScaledEvidence(0.99), policy).verdict, Verdict::kMaybe);
  EXPECT_EQ(Decide(ScaledEvidence(0.995), policy).verdict, Verdict::kDiscard);
}

TEST(VerdictTest, PolicyForCopiesSpecAndPicksProfileThresholds) {
  VerdictSpec spec;
  spec.alpha = 0.01;
  spec.max_cv = 0.2;
  spec.input_regression = 0.07;
  DecisionPolicy p = PolicyFor(spec, Better::kHigher, 42);
  EXPECT_EQ(p.keep_threshold, 0.05);
  EXPECT_EQ(p.maybe_threshold, 0.02);
  EXPECT_EQ(p.alpha, 0.01);
  EXPECT_EQ(p.max_cv, 0.2);
  EXPECT_EQ(p.input_regression, 0.07);
  EXPECT_EQ(p.better, Better::kHigher);
  EXPECT_EQ(p.seed, 42u);
  spec.profile = DecisionProfile::kOptimized;
  p = PolicyFor(spec, Better::kLower, 0);
  EXPECT_EQ(p.keep_threshold, 0.02);
  EXPECT_EQ(p.maybe_threshold, 0.01);
}

TEST(VerdictTest, StricterAlphaFromPolicyIsHonoured) {
  DecisionPolicy policy = FirstPass();
  policy.alpha = 1e-9;  // below 2/C(22,11) = 2.8e-6, the best 11 vs 11 can do
  const Decision d = Decide(ScaledEvidence(0.8), policy);
  EXPECT_EQ(d.verdict, Verdict::kInconclusive);
  EXPECT_TRUE(d.needs_more_runs);
}

TEST(VerdictTest, BootstrapIntervalIsReproducibleForASeed) {
  CandidateEvidence e = OverlappingTenPercent();
  DecisionPolicy policy = FirstPass();
  policy.seed = 11;
  const Decision a = Decide(e, policy);
  const Decision b = Decide(e, policy);
  EXPECT_EQ(a.inputs[0].change_ci.low, b.inputs[0].change_ci.low);
  EXPECT_EQ(a.inputs[0].change_ci.high, b.inputs[0].change_ci.high);
  EXPECT_LT(a.inputs[0].change_ci.low, -0.1 + 1e-9);
  EXPECT_GT(a.inputs[0].change_ci.high, -0.1 - 1e-9);
  EXPECT_LT(a.inputs[0].change_ci.low, a.inputs[0].change_ci.high);
}

TEST(VerdictTest, VerdictNames) {
  EXPECT_STREQ(VerdictName(Verdict::kKeep), "KEEP");
  EXPECT_STREQ(VerdictName(Verdict::kMaybe), "MAYBE");
  EXPECT_STREQ(VerdictName(Verdict::kDiscard), "DISCARD");
  EXPECT_STREQ(VerdictName(Verdict::kKill), "KILL");
  EXPECT_STREQ(VerdictName(Verdict::kReject), "REJECT");
  EXPECT_STREQ(VerdictName(Verdict::kInconclusive), "INCONCLUSIVE");
}

// --- CandidateDeadline
// -------------------------------------------------------------------------

TEST(CandidateDeadlineTest, UsesAbsoluteTimeoutBeforeThreeBaselineRuns) {
  EXPECT_EQ(CandidateDeadline({}, 1.1, absl::Minutes(30)), absl::Minutes(30));
  EXPECT_EQ(
      CandidateDeadline(std::vector<double>{1e9, 1e9}, 1.1, absl::Minutes(30)),
      absl::Minutes(30));
}

TEST(CandidateDeadlineTest, KillFactorTimesMedianOnAQuietBaseline) {
  const absl::Duration d = CandidateDeadline(
      std::vector<double>{1e9, 1.01e9, 0.99e9}, 1.1, absl::Minutes(30));
  EXPECT_NEAR(absl::ToDoubleNanoseconds(d), 1.1e9, 1);
}

TEST(CandidateDeadlineTest, SpreadBoundWinsWhenBaselineIsNoisy) {
  // median 1.0 s, MAD 0.05 s: slowest 1.2 s + 4 x 1.4826 x 0.05 s = 1.49652 s,
  // above 1.1 x the median.
  const absl::Duration d = CandidateDeadline(
      std::vector<double>{1e9, 1e9, 1.2e9, 0.9e9}, 1.1, absl::Minutes(30));
  EXPECT_NEAR(absl::ToDoubleNanoseconds(d), 1.2e9 + 4 * 1.4826 * 0.05e9, 1);
}

TEST(CandidateDeadlineTest, ShortProgramsGetAtLeastTheMinimumMargin) {
  // A tight 1 ms baseline: 1.1 x 1 ms would sit inside scheduler jitter; the
  // bound is the slowest run plus kKillMinMargin (2 ms).
  const absl::Duration d = CandidateDeadline(
      std::vector<double>{1.0e6, 1.0e6, 1.01e6}, 1.1, absl::Minutes(30));
  EXPECT_EQ(d, absl::Nanoseconds(1.01e6) + kKillMinMargin);
  EXPECT_EQ(KillBoundNs(std::vector<double>{1e6, 1e6}, 1.1), std::nullopt);
}

TEST(CountsTowardKillTest, OnlyEvidenceCounts) {
  const std::vector<double> base = {100e6, 101e6, 99e6, 100e6};  // bound 110 ms
  KillRun slow{.wall_ns = 150e6};
  EXPECT_TRUE(CountsTowardKill(slow, base, 1.1));
  KillRun within{.wall_ns = 105e6};
  EXPECT_FALSE(CountsTowardKill(within, base, 1.1));
  KillRun flagged{.wall_ns = 150e6, .host_flagged = true};
  EXPECT_FALSE(CountsTowardKill(flagged, base, 1.1))
      << "a run the host disturbed is no evidence";
  // Stopped at an earlier, lower bound (105 ms): judged against the bound
  // now, it is within it.
  KillRun stopped{.wall_ns = 105.02e6};
  EXPECT_FALSE(CountsTowardKill(stopped, base, 1.1));
  KillRun hang{
      .wall_ns = 30e9, .hit_absolute_timeout = true, .host_flagged = true};
  EXPECT_TRUE(CountsTowardKill(hang, {}, 1.1)) << "a hang is never noise";
  EXPECT_FALSE(CountsTowardKill(slow, {100e6, 100e6}, 1.1))
      << "no bound before three baseline runs";
}

TEST(CandidateDeadlineTest, CappedAtAbsoluteTimeout) {
  EXPECT_EQ(CandidateDeadline(std::vector<double>{1e9, 1e9, 1e9}, 1.1,
                              absl::Seconds(1)),
            absl::Seconds(1));
}

}  // namespace
}  // namespace benchfleet::verdict
