#include "controller/verdict/verdict.h"

#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/spec.h"
#include "controller/stats/stats.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet::verdict {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// `n` (odd) values centred exactly on `median`, evenly `step` apart, in a
// shuffled but fixed order: median + k*step for k = -(n/2)..(n/2). The median
// is exact (offset 0).
std::vector<double> Around(double median, int n, double step) {
  std::vector<double> xs;
  for (int i = 0; i < n; ++i) {
    const int k = (i * 7) % n - n / 2;  // 7 is coprime with the sizes used here
    xs.push_back(median + k * step);
  }
  return xs;
}

// Baseline around 100 with +-0.5% jitter: CV ~0.3%.
std::vector<double> QuietBaseline() { return Around(100, 11, 0.1); }

std::vector<double> Scaled(std::vector<double> xs, double factor) {
  for (double& x : xs) x *= factor;
  return xs;
}

InputSamples Input(std::string name, std::vector<double> baseline,
                   std::vector<double> candidate, double weight = 1.0) {
  InputSamples in;
  in.input = std::move(name);
  in.weight = weight;
  in.baseline = std::move(baseline);
  in.candidate = std::move(candidate);
  return in;
}

// One input whose candidate is the quiet baseline scaled by `factor`.
CandidateEvidence ScaledEvidence(double factor, bool at_max_runs = false) {
  CandidateEvidence e;
  e.variant = "cand";
  e.at_max_runs = at_max_runs;
  e.inputs.push_back(
      Input("in", QuietBaseline(), Scaled(QuietBaseline(), factor)));
  return e;
}

// Five inputs, each candidate the baseline scaled by `factor`.
CandidateEvidence FiveInputs(double factor) {
  CandidateEvidence e;
  e.variant = "cand";
  for (const char* name : {"a", "b", "c", "d", "e"}) {
    e.inputs.push_back(
        Input(name, QuietBaseline(), Scaled(QuietBaseline(), factor)));
  }
  return e;
}

DecisionPolicy FirstPass() { return DecisionPolicy{}; }

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
