// The verdict table's noise rows (DESIGN.md §4): noisy inputs, their CIs
// against the thresholds, outliers and unmeasurable inputs.
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "controller/verdict/verdict.h"
#include "tests/controller/verdict_testing.h"

namespace benchfleet::verdict {
namespace {

using namespace testing_helpers;  // NOLINT(build/namespaces): test helpers

// --- Row 3: noise
// ----------------------------------------------------------------------

CandidateEvidence OneNoisyInput(bool at_max_runs) {
  CandidateEvidence e = ScaledEvidence(0.8, at_max_runs);
  // Evenly spread over 70..130: CV ~20%, and no point is an outlier, so
  // trimming cannot help.
  e.inputs.push_back(
      Input("noisy", Around(100, 11, 6), Scaled(Around(100, 11, 6), 0.8)));
  return e;
}

TEST(VerdictTest, NoisyInputRequestsMoreRunsBeforeMaxRuns) {
  const Decision d = Decide(OneNoisyInput(false), FirstPass());
  EXPECT_EQ(d.verdict, Verdict::kInconclusive);
  EXPECT_TRUE(d.needs_more_runs);
  EXPECT_THAT(d.inputs_to_extend, ElementsAre("noisy"));
  EXPECT_THAT(d.reason, HasSubstr("'noisy'"));
  ASSERT_EQ(d.inputs.size(), 2u);
  EXPECT_FALSE(d.inputs[0].flaky);
  EXPECT_TRUE(d.inputs[1].flaky);
  EXPECT_TRUE(d.inputs[1].still_flaky);
  EXPECT_EQ(d.inputs[1].baseline_outliers_removed, 0u);
}

TEST(VerdictTest, NoisyInputIsInconclusiveAtMaxRuns) {
  const Decision d = Decide(OneNoisyInput(true), FirstPass());
  EXPECT_EQ(d.verdict, Verdict::kInconclusive);
  EXPECT_FALSE(d.needs_more_runs);
  EXPECT_THAT(d.inputs_to_extend, IsEmpty());
  EXPECT_THAT(d.reason, HasSubstr("max_runs"));
  // Both groups spread over +-30%: the CI spans the keep and maybe thresholds.
  EXPECT_THAT(d.reason, HasSubstr("straddles the keep threshold -5.0% and "
                                  "the maybe threshold -2.0%"));
}

// `n` values around `median` with a CV near `cv`: median * (1 + cv * z), z
// standard normal by Box-Muller over std::mt19937_64 (whose output the
// standard fixes, unlike std::normal_distribution's), so a seed gives the same
// samples everywhere.
std::vector<double> Noisy(double median, double cv, int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const auto uniform = [&rng] {
    return (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53;  // (0, 1)
  };
  std::vector<double> xs;
  for (int i = 0; i < n; ++i) {
    const double z = std::sqrt(-2 * std::log(uniform())) *
                     std::cos(2 * std::numbers::pi * uniform());
    xs.push_back(median * (1 + cv * z));
  }
  return xs;
}

// Four quiet inputs 12% better, plus input "big": a quiet baseline and a
// candidate with a CV of ~20% around `big_factor` x the baseline, 20 runs each.
CandidateEvidence QuietPlusNoisyBig(double big_factor, bool at_max_runs,
                                    uint64_t seed = 7) {
  CandidateEvidence e = FiveInputs(0.88);
  e.inputs.pop_back();
  e.at_max_runs = at_max_runs;
  e.inputs.push_back(Input("big", Noisy(100, 0.005, 21, seed),
                           Noisy(100 * big_factor, 0.20, 21, seed + 1)));
  return e;
}

// The noisy input's analysis, checked to be what the test means it to be.
const InputDecision& NoisyBig(const Decision& d) {
  const InputDecision& big = d.inputs.back();
  EXPECT_EQ(big.input, "big");
  EXPECT_TRUE(big.measurable);
  EXPECT_TRUE(big.still_flaky) << "CV " << big.candidate.cv;
  return big;
}

TEST(VerdictTest, NoisyInputWhoseCiStraddlesKeepIsInconclusiveAtMaxRuns) {
  // The candidate is ~5% faster on "big": its wide CI spans the keep
  // threshold, so whether it is a KEEP depends on its noise.
  const Decision d = Decide(QuietPlusNoisyBig(0.95, true), FirstPass());
  const InputDecision& big = NoisyBig(d);
  ASSERT_LT(big.change_ci.low, -0.05);
  ASSERT_GT(big.change_ci.high, -0.05);
  EXPECT_EQ(d.verdict, Verdict::kInconclusive) << d.reason;
  EXPECT_FALSE(d.needs_more_runs);
  EXPECT_THAT(d.inputs_to_extend, IsEmpty());
  EXPECT_THAT(d.reason, HasSubstr("input 'big' too noisy"));
  EXPECT_THAT(d.reason, HasSubstr("straddles the keep threshold -5.0%"));
  EXPECT_THAT(d.reason, HasSubstr("(at max_runs)"));
  EXPECT_TRUE(NoiseBlocksVerdict(big, FirstPass()));
  EXPECT_EQ(ClassifyInput(big, false, FirstPass()), Verdict::kInconclusive);
}

TEST(VerdictTest, NoisyInputWhoseCiStraddlesKeepRequestsMoreRunsBeforeMaxRuns) {
  const Decision d = Decide(QuietPlusNoisyBig(0.95, false), FirstPass());
  NoisyBig(d);
  EXPECT_EQ(d.verdict, Verdict::kInconclusive);
  EXPECT_TRUE(d.needs_more_runs);
  EXPECT_THAT(d.inputs_to_extend, ElementsAre("big"));
}

TEST(VerdictTest, NoisyInputWhoseCiIsWhollyPastKeepStillKeeps) {
  // ~40% faster on "big": noisy, but every value in its CI is a KEEP.
  const Decision d = Decide(QuietPlusNoisyBig(0.60, true), FirstPass());
  const InputDecision& big = NoisyBig(d);
  ASSERT_LT(big.change_ci.high, -0.05);
  EXPECT_EQ(d.verdict, Verdict::kKeep) << d.reason;
  EXPECT_THAT(d.reason, HasSubstr(">= keep 5.0%"));
  EXPECT_THAT(d.reason, HasSubstr("; noisy: input 'big' CV "));
  EXPECT_THAT(d.reason, HasSubstr("> 10.0% but its 95% CI ["));
  EXPECT_THAT(d.reason,
              HasSubstr("lies wholly on one side of every deciding threshold"));
  EXPECT_FALSE(NoiseBlocksVerdict(big, FirstPass()));
  EXPECT_EQ(ClassifyInput(big, false, FirstPass()), Verdict::kKeep);
}

TEST(VerdictTest, NoisyInputWithAClearCiIsStillExtendedBeforeMaxRuns) {
  const Decision d = Decide(QuietPlusNoisyBig(0.60, false), FirstPass());
  NoisyBig(d);
  EXPECT_EQ(d.verdict, Verdict::kInconclusive);
  EXPECT_TRUE(d.needs_more_runs);
  EXPECT_THAT(d.inputs_to_extend, ElementsAre("big"));
}

TEST(VerdictTest, NoisyInputWhoseRegressionCiIsWhollyPastTheLimitDiscards) {
  // ~40% slower on "big": past input_regression wherever its CI lies.
  const Decision d = Decide(QuietPlusNoisyBig(1.40, true), FirstPass());
  const InputDecision& big = NoisyBig(d);
  ASSERT_GT(big.change_ci.low, 0.05);
  EXPECT_EQ(d.verdict, Verdict::kDiscard) << d.reason;
  EXPECT_THAT(d.reason, HasSubstr("input 'big' regresses"));
  EXPECT_THAT(d.reason, HasSubstr("; noisy: input 'big'"));
  EXPECT_TRUE(big.regressed);
  EXPECT_EQ(ClassifyInput(big, false, FirstPass()), Verdict::kDiscard);
}

TEST(VerdictTest, NoisyInputWhoseCiStraddlesTheRegressionLimitIsInconclusive) {
  const Decision d = Decide(QuietPlusNoisyBig(1.05, true), FirstPass());
  const InputDecision& big = NoisyBig(d);
  ASSERT_LT(big.change_ci.low, 0.05);
  ASSERT_GT(big.change_ci.high, 0.05);
  EXPECT_EQ(d.verdict, Verdict::kInconclusive) << d.reason;
  EXPECT_THAT(d.reason,
              HasSubstr("straddles the keep threshold -5.0% and the maybe "
                        "threshold -2.0% and the input_regression threshold "
                        "+5.0%"));
}

TEST(VerdictTest, AggregateIsSetOnAnInconclusiveNoiseVerdict) {
  const Decision d = Decide(QuietPlusNoisyBig(0.95, true), FirstPass());
  ASSERT_EQ(d.verdict, Verdict::kInconclusive);
  EXPECT_TRUE(d.aggregate_measured);
  double log_sum = 0;
  for (const InputDecision& in : d.inputs)
    log_sum += std::log(in.candidate.median / in.baseline.median);
  const double expected = std::expm1(log_sum / d.inputs.size());
  EXPECT_NEAR(d.aggregate_change, expected, 1e-12);
  EXPECT_LT(d.aggregate_change, -0.05);
  EXPECT_NEAR(d.aggregate_improvement, -expected, 1e-12);
  EXPECT_LT(d.aggregate_p_value, 0.05);
}

TEST(VerdictTest, AggregateIsSetOnRejectKillAndRowSevenInconclusive) {
  CandidateEvidence rejected = FiveInputs(0.88);
  rejected.correctness_failed = true;
  CandidateEvidence killed = FiveInputs(0.88);
  killed.killed = true;
  for (const CandidateEvidence& e : {rejected, killed}) {
    const Decision d = Decide(e, FirstPass());
    EXPECT_TRUE(d.aggregate_measured);
    EXPECT_NEAR(d.aggregate_change, -0.12, 1e-12);
    EXPECT_LT(d.aggregate_p_value, 1e-6);
  }
  CandidateEvidence not_significant;
  not_significant.inputs.push_back(Input("in", {100, 101, 99}, {90, 91, 89}));
  const Decision d = Decide(not_significant, FirstPass());
  ASSERT_EQ(d.verdict, Verdict::kInconclusive);
  EXPECT_TRUE(d.aggregate_measured);
  EXPECT_NEAR(d.aggregate_change, -0.10, 1e-12);
}

TEST(VerdictTest, NoAggregateWhenAnInputIsNotMeasurable) {
  CandidateEvidence e = FiveInputs(0.88);
  e.at_max_runs = true;
  e.inputs.push_back(Input("one_run", QuietBaseline(), {88.0}));
  const Decision d = Decide(e, FirstPass());
  EXPECT_EQ(d.verdict, Verdict::kInconclusive);
  EXPECT_THAT(d.reason, HasSubstr("'one_run' cannot be compared"));
  EXPECT_FALSE(d.aggregate_measured);
  EXPECT_EQ(d.aggregate_change, 0);
  EXPECT_EQ(d.aggregate_p_value, 1);
  EXPECT_EQ(ClassifyInput(d.inputs.back(), false, FirstPass()),
            Verdict::kInconclusive);
}

// Better::kHigher: an improvement is a positive change.
CandidateEvidence HigherIsBetterNoisyBig(double big_factor) {
  CandidateEvidence e;
  e.at_max_runs = true;
  for (const char* name : {"a", "b", "c", "d"}) {
    e.inputs.push_back(
        Input(name, QuietBaseline(), Scaled(QuietBaseline(), 1.12)));
  }
  e.inputs.push_back(Input("big", Noisy(100, 0.005, 21, 7),
                           Noisy(100 * big_factor, 0.20, 21, 8)));
  return e;
}

DecisionPolicy HigherIsBetter() {
  DecisionPolicy policy = FirstPass();
  policy.better = Better::kHigher;
  return policy;
}

TEST(VerdictTest, HigherIsBetterNoisyInputWhollyPastKeepKeeps) {
  const Decision d = Decide(HigherIsBetterNoisyBig(1.60), HigherIsBetter());
  const InputDecision& big = NoisyBig(d);
  ASSERT_GT(big.change_ci.low, 0.05);
  EXPECT_EQ(d.verdict, Verdict::kKeep) << d.reason;
  EXPECT_THAT(d.reason, HasSubstr("; noisy: input 'big'"));
  EXPECT_GT(d.aggregate_change, 0.05);
  EXPECT_NEAR(d.aggregate_improvement, d.aggregate_change, 1e-12);
}

TEST(VerdictTest, HigherIsBetterNoisyInputStraddlingKeepIsInconclusive) {
  const Decision d = Decide(HigherIsBetterNoisyBig(1.05), HigherIsBetter());
  const InputDecision& big = NoisyBig(d);
  ASSERT_LT(big.change_ci.low, 0.05);
  ASSERT_GT(big.change_ci.high, 0.05);
  EXPECT_EQ(d.verdict, Verdict::kInconclusive) << d.reason;
  EXPECT_THAT(d.reason, HasSubstr("straddles the keep threshold +5.0%"));
  EXPECT_TRUE(d.aggregate_measured);
  EXPECT_GT(d.aggregate_change, 0.05);
}

TEST(VerdictTest, HigherIsBetterNoisyRegressionWhollyPastTheLimitDiscards) {
  const Decision d = Decide(HigherIsBetterNoisyBig(0.60), HigherIsBetter());
  const InputDecision& big = NoisyBig(d);
  ASSERT_LT(big.change_ci.high, -0.05);
  EXPECT_EQ(d.verdict, Verdict::kDiscard) << d.reason;
  EXPECT_THAT(d.reason, HasSubstr("input 'big' regresses"));
  EXPECT_TRUE(big.regressed);
}

// --- The noise rule's pure parts
// -------------------------------------------------------

std::vector<std::string> Names(const std::vector<DecidingThreshold>& ts) {
  std::vector<std::string> names;
  for (const DecidingThreshold& t : ts) names.push_back(t.name);
  return names;
}

TEST(DecidingThresholdsTest, AreSignedAsChangesForTheMetricsDirection) {
  const std::vector<DecidingThreshold> lower = DecidingThresholds(FirstPass());
  EXPECT_THAT(Names(lower), ElementsAre("keep", "maybe", "input_regression"));
  EXPECT_DOUBLE_EQ(lower[0].change, -0.05);
  EXPECT_DOUBLE_EQ(lower[1].change, -0.02);
  EXPECT_DOUBLE_EQ(lower[2].change, 0.05);
  const std::vector<DecidingThreshold> higher =
      DecidingThresholds(HigherIsBetter());
  EXPECT_DOUBLE_EQ(higher[0].change, 0.05);
  EXPECT_DOUBLE_EQ(higher[1].change, 0.02);
  EXPECT_DOUBLE_EQ(higher[2].change, -0.05);
}

TEST(StraddledThresholdsTest, LowerIsBetter) {
  const DecisionPolicy p = FirstPass();
  // Wholly past keep, between maybe and keep, between maybe and the
  // regression limit, wholly past the regression limit: clear.
  EXPECT_THAT(StraddledThresholds({-0.41, -0.20}, p), IsEmpty());
  EXPECT_THAT(StraddledThresholds({-0.045, -0.025}, p), IsEmpty());
  EXPECT_THAT(StraddledThresholds({-0.01, 0.04}, p), IsEmpty());
  EXPECT_THAT(StraddledThresholds({0.06, 0.30}, p), IsEmpty());
  EXPECT_THAT(Names(StraddledThresholds({-0.07, -0.03}, p)),
              ElementsAre("keep"));
  EXPECT_THAT(Names(StraddledThresholds({-0.03, 0.0}, p)),
              ElementsAre("maybe"));
  EXPECT_THAT(Names(StraddledThresholds({0.03, 0.07}, p)),
              ElementsAre("input_regression"));
  EXPECT_THAT(Names(StraddledThresholds({-0.30, 0.30}, p)),
              ElementsAre("keep", "maybe", "input_regression"));
}

TEST(StraddledThresholdsTest, HigherIsBetterMirrorsTheSigns) {
  const DecisionPolicy p = HigherIsBetter();
  EXPECT_THAT(StraddledThresholds({0.20, 0.41}, p), IsEmpty());
  EXPECT_THAT(StraddledThresholds({-0.30, -0.06}, p), IsEmpty());
  EXPECT_THAT(Names(StraddledThresholds({0.03, 0.07}, p)), ElementsAre("keep"));
  EXPECT_THAT(Names(StraddledThresholds({-0.07, -0.03}, p)),
              ElementsAre("input_regression"));
}

TEST(StraddledThresholdsTest, ACiEndingOnAThresholdDoesNotStraddleIt) {
  const DecisionPolicy p = FirstPass();
  EXPECT_THAT(StraddledThresholds({-0.20, -0.05}, p), IsEmpty());
  EXPECT_THAT(StraddledThresholds({-0.05, -0.03}, p), IsEmpty());
  // 95/100 - 1 is not exactly -0.05 in binary; the tolerance still applies.
  EXPECT_THAT(StraddledThresholds({-0.20, 95.0 / 100.0 - 1}, p), IsEmpty());
  EXPECT_THAT(Names(StraddledThresholds({-0.20, -0.0499}, p)),
              ElementsAre("keep"));
}

TEST(StraddledThresholdsTest, ACiThatIsNotFiniteStraddlesEverything) {
  EXPECT_EQ(StraddledThresholds({NAN, NAN}, FirstPass()).size(), 3u);
  EXPECT_EQ(StraddledThresholds({-0.5, INFINITY}, FirstPass()).size(), 3u);
}

TEST(NoiseBlocksVerdictTest, OnlyNoisyInputsWithAStraddlingCiOrNoDataBlock) {
  InputDecision in;
  in.measurable = true;
  in.change = -0.30;
  in.change_ci = {-0.40, -0.07};
  EXPECT_FALSE(NoiseBlocksVerdict(in, FirstPass()));  // quiet
  in.still_flaky = true;
  EXPECT_FALSE(NoiseBlocksVerdict(in, FirstPass()));  // noisy but clear
  in.change_ci = {-0.40, -0.03};
  EXPECT_TRUE(NoiseBlocksVerdict(in, FirstPass()));  // straddles keep
  in.still_flaky = false;
  EXPECT_FALSE(NoiseBlocksVerdict(in, FirstPass()));  // quiet never blocks
  in.measurable = false;
  EXPECT_TRUE(NoiseBlocksVerdict(in, FirstPass()));
}

TEST(NoiseBlocksVerdictTest, ThePointEstimateCountsWhenOutsideTheCi) {
  // A percentile bootstrap CI need not contain the point estimate; the
  // regression test reads the point estimate, so it must count.
  InputDecision in;
  in.measurable = true;
  in.still_flaky = true;
  in.change = -0.04;
  in.change_ci = {-0.30, -0.06};
  EXPECT_TRUE(NoiseBlocksVerdict(in, FirstPass()));
}

TEST(ClassifyInputTest, FollowsTheTableForOneInput) {
  InputDecision in;
  in.measurable = true;
  in.p_value = 0.001;
  in.change = -0.12;
  in.improvement = 0.12;
  in.change_ci = {-0.15, -0.09};
  EXPECT_EQ(ClassifyInput(in, false, FirstPass()), Verdict::kKeep);
  EXPECT_EQ(ClassifyInput(in, true, FirstPass()), Verdict::kReject);
  in.p_value = 0.2;
  EXPECT_EQ(ClassifyInput(in, false, FirstPass()), Verdict::kDiscard);
  in.p_value = 0.001;
  in.change = -0.03;
  in.improvement = 0.03;
  in.change_ci = {-0.04, -0.025};
  EXPECT_EQ(ClassifyInput(in, false, FirstPass()), Verdict::kMaybe);
  in.still_flaky = true;  // noisy, CI between maybe and keep: still MAYBE
  EXPECT_EQ(ClassifyInput(in, false, FirstPass()), Verdict::kMaybe);
  in.change_ci = {-0.06, -0.01};
  EXPECT_EQ(ClassifyInput(in, false, FirstPass()), Verdict::kInconclusive);
}

TEST(VerdictTest, RemovesOutliersOnFlakyPathAndRecordsThem) {
  std::vector<double> baseline = QuietBaseline();
  baseline[3] = 200;  // one slow run: raw CV ~28%
  CandidateEvidence e;
  e.inputs.push_back(Input("in", baseline, Scaled(QuietBaseline(), 0.88)));
  ASSERT_GT(stats::Summarize(baseline).cv, 0.10);
  const Decision d = Decide(e, FirstPass());
  EXPECT_EQ(d.verdict, Verdict::kKeep) << d.reason;
  const InputDecision& in = d.inputs[0];
  EXPECT_TRUE(in.flaky);
  EXPECT_FALSE(in.still_flaky);
  EXPECT_EQ(in.baseline_outliers_removed, 1u);
  EXPECT_EQ(in.candidate_outliers_removed, 0u);
  EXPECT_EQ(in.baseline.n, 10u);  // summary after removal
  EXPECT_LT(in.baseline.max, 101);
}

TEST(VerdictTest, QuietInputIsNeverTrimmed) {
  std::vector<double> baseline = QuietBaseline();
  baseline[3] =
      101.5;  // an "outlier" by 2-sigma MAD, but the input is not flaky
  CandidateEvidence e;
  e.inputs.push_back(Input("in", baseline, Scaled(QuietBaseline(), 0.88)));
  const Decision d = Decide(e, FirstPass());
  EXPECT_FALSE(d.inputs[0].flaky);
  EXPECT_EQ(d.inputs[0].baseline_outliers_removed, 0u);
  EXPECT_EQ(d.inputs[0].baseline.n, 11u);
}

TEST(VerdictTest, UnmeasurableInputRequestsMoreRuns) {
  CandidateEvidence e;
  e.inputs.push_back(Input("one_run", QuietBaseline(), {88.0}));
  const Decision d = Decide(e, FirstPass());
  EXPECT_EQ(d.verdict, Verdict::kInconclusive);
  EXPECT_TRUE(d.needs_more_runs);
  EXPECT_THAT(d.inputs_to_extend, ElementsAre("one_run"));
  EXPECT_FALSE(d.inputs[0].measurable);
}

TEST(VerdictTest, NoInputsIsInconclusive) {
  const Decision d = Decide(CandidateEvidence{}, FirstPass());
  EXPECT_EQ(d.verdict, Verdict::kInconclusive);
  EXPECT_FALSE(d.needs_more_runs);
}

}  // namespace
}  // namespace benchfleet::verdict
