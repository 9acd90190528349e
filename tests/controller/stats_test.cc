#include "controller/stats/stats.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet::stats {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Relative closeness: |actual - expected| <= rel * |expected|.
void ExpectRelNear(double actual, double expected, double rel) {
  EXPECT_NEAR(actual, expected, std::fabs(expected) * rel)
      << "expected " << expected;
}

// R's `sleep` data set (Cushny & Peebles 1905, Student 1908): extra hours of
// sleep with two drugs. Used by R's ?t.test and ?wilcox.test examples.
const std::vector<double> kSleepGroup1 = {0.7, -1.6, -0.2, -1.2, -0.1,
                                          3.4, 3.7,  0.8,  0.0,  2.0};
const std::vector<double> kSleepGroup2 = {1.9, 0.8, 1.1, 0.1, -0.1,
                                          4.4, 5.5, 1.6, 4.6, 3.4};

// Hollander & Wolfe (1973), p. 69f, as in R's ?wilcox.test: permeability
// constants of the human chorioamnion at term (x) and at 12-26 weeks
// gestational age (y).
const std::vector<double> kPermeabilityTerm = {0.80, 0.83, 1.89, 1.04, 1.45,
                                               1.38, 1.91, 1.64, 0.73, 1.46};
const std::vector<double> kPermeabilityEarly = {1.15, 0.88, 0.90, 0.74, 1.21};

TEST(SummarizeTest, ComputesKnownValues) {
  const std::vector<double> xs = {2, 4, 4, 4, 5, 5, 7, 9};
  const Summary s = Summarize(xs);
  EXPECT_EQ(s.n, 8u);
  EXPECT_DOUBLE_EQ(s.mean, 5);
  EXPECT_DOUBLE_EQ(s.median, 4.5);
  EXPECT_DOUBLE_EQ(s.stddev,
                   std::sqrt(32.0 / 7));  // sum of squares 32, n-1 = 7
  EXPECT_DOUBLE_EQ(s.cv, std::sqrt(32.0 / 7) / 5);
  EXPECT_DOUBLE_EQ(s.min, 2);
  EXPECT_DOUBLE_EQ(s.max, 9);
  EXPECT_DOUBLE_EQ(s.mad, 0.5);  // |x - 4.5| = 2.5 .5 .5 .5 .5 .5 2.5 4.5
  // 5 -+ t(0.975, 7) * sd / sqrt(8), t(0.975, 7) = 2.364624.
  EXPECT_NEAR(s.ci95_low, 3.212512, 1e-5);
  EXPECT_NEAR(s.ci95_high, 6.787488, 1e-5);
}

TEST(SummarizeTest, EmptySampleIsAllZero) {
  const Summary s = Summarize({});
  EXPECT_EQ(s.n, 0u);
  EXPECT_EQ(s.mean, 0);
  EXPECT_EQ(s.median, 0);
  EXPECT_EQ(s.ci95_low, 0);
  EXPECT_EQ(s.ci95_high, 0);
}

TEST(SummarizeTest, SingleValueHasZeroSpreadAndDegenerateInterval) {
  const Summary s = Summarize(std::vector<double>{42});
  EXPECT_EQ(s.n, 1u);
  EXPECT_EQ(s.mean, 42);
  EXPECT_EQ(s.median, 42);
  EXPECT_EQ(s.stddev, 0);
  EXPECT_EQ(s.cv, 0);
  EXPECT_EQ(s.ci95_low, 42);
  EXPECT_EQ(s.ci95_high, 42);
}

TEST(SummarizeTest, CvUsesAbsoluteMean) {
  const Summary s = Summarize(std::vector<double>{-1, -2, -3});
  EXPECT_DOUBLE_EQ(s.cv, 0.5);  // sd 1, |mean| 2
}

TEST(MedianTest, OddEvenAndUnsortedInput) {
  EXPECT_EQ(Median(std::vector<double>{3, 1, 2}), 2);
  EXPECT_EQ(Median(std::vector<double>{4, 1, 3, 2}), 2.5);
  EXPECT_EQ(Median(std::vector<double>{7}), 7);
  EXPECT_EQ(Median({}), 0);
}

TEST(MedianTest, DoesNotModifyInput) {
  const std::vector<double> xs = {5, 3, 9, 1};
  Median(xs);
  EXPECT_THAT(xs, ElementsAre(5, 3, 9, 1));
}

TEST(MannWhitneyTest, MatchesHollanderWolfeExactExample) {
  // R: wilcox.test(x, y, alternative = "greater") gives W = 35, p-value =
  // 0.1272 (exact); the two-sided p is twice that, 0.2544.
  const TestResult r = MannWhitneyU(kPermeabilityTerm, kPermeabilityEarly);
  EXPECT_DOUBLE_EQ(r.statistic, 35);
  EXPECT_TRUE(r.exact);
  EXPECT_NEAR(r.p_value, 0.2544, 5e-5);
}

TEST(MannWhitneyTest, MatchesRSleepExampleWithTies) {
  // R: wilcox.test(extra ~ group, data = sleep) gives W = 25.5, p-value =
  // 0.06933
  // ("cannot compute exact p-value with ties": normal approximation,
  // tie-corrected variance, continuity correction).
  const TestResult r = MannWhitneyU(kSleepGroup1, kSleepGroup2);
  EXPECT_DOUBLE_EQ(r.statistic, 25.5);
  EXPECT_FALSE(r.exact);
  EXPECT_NEAR(r.p_value, 0.06933, 5e-6);
}

TEST(MannWhitneyTest, ExactThreeVersusThreeFullySeparated) {
  // Only 2 of the C(6,3) = 20 arrangements are this extreme: p = 2/20.
  const TestResult low =
      MannWhitneyU(std::vector<double>{1, 2, 3}, std::vector<double>{4, 5, 6});
  EXPECT_TRUE(low.exact);
  EXPECT_EQ(low.statistic, 0);
  EXPECT_NEAR(low.p_value, 0.1, 1e-15);
  const TestResult high =
      MannWhitneyU(std::vector<double>{4, 5, 6}, std::vector<double>{1, 2, 3});
  EXPECT_EQ(high.statistic, 9);
  EXPECT_NEAR(high.p_value, 0.1, 1e-15);
}

TEST(MannWhitneyTest, ExactTenVersusTenFullySeparated) {
  std::vector<double> a, b;
  for (int i = 0; i < 10; ++i) {
    a.push_back(100 + i);
    b.push_back(50 + i);
  }
  const TestResult r = MannWhitneyU(a, b);
  EXPECT_TRUE(r.exact);
  EXPECT_EQ(r.statistic, 100);
  ExpectRelNear(r.p_value, 2.0 / 184756, 1e-12);  // 2 / C(20, 10) = 1.0825e-5
}

TEST(MannWhitneyTest, ExactAtFiftyVersusFiftyDoesNotUnderflow) {
  std::vector<double> a, b;
  for (int i = 0; i < 50; ++i) {
    a.push_back(i);
    b.push_back(1000 + i);
  }
  const TestResult r = MannWhitneyU(a, b);
  EXPECT_TRUE(r.exact);
  ExpectRelNear(r.p_value, 1.982331e-29, 1e-6);  // 2 / C(100, 50)
}

TEST(MannWhitneyTest, ExactUnequalSizes) {
  // n1 = 3, n2 = 4: the counts of U = 0, 1, 2, ... among the C(7,3) = 35
  // arrangements are 1, 1, 2, 3, 4, 4, 5, 4, ... (symmetric about 6).
  const TestResult r = MannWhitneyU(std::vector<double>{1, 2, 5},
                                    std::vector<double>{3, 4, 6, 7});
  EXPECT_TRUE(r.exact);
  EXPECT_EQ(r.statistic, 2);
  EXPECT_NEAR(r.p_value, 2.0 * 4 / 35, 1e-14);
  // U = 6 is the centre of the distribution: 2 * P(U <= 6) = 40/35 is capped
  // at 1.
  const TestResult centre = MannWhitneyU(std::vector<double>{1, 4, 7},
                                         std::vector<double>{2, 3, 5, 6});
  EXPECT_EQ(centre.statistic, 6);
  EXPECT_EQ(centre.p_value, 1);
}

TEST(MannWhitneyTest, LargeSamplesUseNormalApproximation) {
  std::vector<double> a, b;
  for (int i = 0; i < 51; ++i) {
    a.push_back(i);
    b.push_back(1000 + i);
  }
  const TestResult r = MannWhitneyU(a, b);
  EXPECT_FALSE(r.exact);
  EXPECT_EQ(r.statistic, 0);
  // z = (0 - 1300.5 + 0.5) / sqrt(51*51*103/12) = -8.700519543354666;
  // p = 2 Phi(-|z|) = erfc(|z| / sqrt(2)), worked out with Python's math.erfc.
  ExpectRelNear(r.p_value, 3.303681501666192e-18, 1e-9);
  EXPECT_LT(r.p_value, 1e-17);
}

TEST(MannWhitneyTest, AllTiedGivesNoEvidence) {
  const TestResult r =
      MannWhitneyU(std::vector<double>{3, 3, 3}, std::vector<double>{3, 3});
  EXPECT_EQ(r.statistic, 3);
  EXPECT_EQ(r.p_value, 1);
}

TEST(MannWhitneyTest, EmptySampleGivesNoEvidence) {
  const TestResult r = MannWhitneyU({}, std::vector<double>{1, 2});
  EXPECT_EQ(r.p_value, 1);
  EXPECT_EQ(r.statistic, 0);
}

TEST(WelchTest, MatchesRSleepExample) {
  // R: t.test(extra ~ group, data = sleep) gives
  // t = -1.8608, df = 17.776, p-value = 0.07939.
  double df = 0;
  const TestResult r = WelchT(kSleepGroup1, kSleepGroup2, &df);
  EXPECT_NEAR(r.statistic, -1.8608, 5e-5);
  EXPECT_NEAR(df, 17.776, 5e-4);
  EXPECT_NEAR(r.p_value, 0.07939, 5e-6);
  EXPECT_FALSE(r.exact);
  // The overload without df agrees.
  EXPECT_EQ(WelchT(kSleepGroup1, kSleepGroup2).p_value, r.p_value);
}

TEST(WelchTest, SignFollowsFirstMinusSecond) {
  EXPECT_GT(WelchT(kSleepGroup2, kSleepGroup1).statistic, 0);
  EXPECT_NEAR(WelchT(kSleepGroup2, kSleepGroup1).p_value, 0.07939, 5e-6);
}

TEST(WelchTest, TooFewValuesGivesNoEvidence) {
  const TestResult r =
      WelchT(std::vector<double>{1}, std::vector<double>{2, 3});
  EXPECT_EQ(r.p_value, 1);
  EXPECT_EQ(r.statistic, 0);
}

TEST(WelchTest, ZeroVarianceSamples) {
  EXPECT_EQ(
      WelchT(std::vector<double>{1, 1}, std::vector<double>{1, 1}).p_value, 1);
  const TestResult r =
      WelchT(std::vector<double>{2, 2}, std::vector<double>{1, 1});
  EXPECT_EQ(r.p_value, 0);
  EXPECT_TRUE(std::isinf(r.statistic) && r.statistic > 0);
}

TEST(DistributionTest, NormalCdfKnownValues) {
  EXPECT_DOUBLE_EQ(NormalCdf(0), 0.5);
  EXPECT_NEAR(NormalCdf(1.959963985), 0.975, 1e-10);
  EXPECT_NEAR(NormalCdf(-1), 0.158655254, 1e-9);
  ExpectRelNear(NormalCdf(-10), 7.619853e-24, 1e-6);
}

TEST(DistributionTest, NormalQuantileInvertsCdf) {
  EXPECT_EQ(NormalQuantile(0.5), 0);
  EXPECT_NEAR(NormalQuantile(0.975), 1.959963985, 1e-9);
  EXPECT_NEAR(NormalQuantile(0.025), -1.959963985, 1e-9);
  for (double z : {-30.0, -8.0, -3.0, -0.1, 0.7, 5.0}) {
    EXPECT_NEAR(NormalQuantile(NormalCdf(z)), z,
                1e-8 * std::max(1.0, std::fabs(z)))
        << z;
  }
  EXPECT_TRUE(std::isinf(NormalQuantile(0)));
  EXPECT_TRUE(std::isinf(NormalQuantile(1)));
}

TEST(DistributionTest, IncompleteBetaClosedForms) {
  EXPECT_NEAR(RegularizedIncompleteBeta(0.3, 1, 1), 0.3, 1e-14);
  EXPECT_NEAR(RegularizedIncompleteBeta(0.3, 3, 1), 0.027, 1e-14);  // x^a
  EXPECT_NEAR(RegularizedIncompleteBeta(0.5, 7.5, 7.5), 0.5, 1e-13);
  EXPECT_EQ(RegularizedIncompleteBeta(0, 2, 3), 0);
  EXPECT_EQ(RegularizedIncompleteBeta(1, 2, 3), 1);
  EXPECT_TRUE(std::isnan(RegularizedIncompleteBeta(0.5, -1, 3)));
}

TEST(DistributionTest, StudentTCdfMatchesClosedForms) {
  for (double t : {-50.0, -3.0, -0.5, 0.0, 0.25, 2.0, 12.7062}) {
    // df = 1 is the Cauchy distribution; df = 2 has F(t) = 1/2 + t / (2 sqrt(2
    // + t^2)).
    EXPECT_NEAR(StudentTCdf(t, 1), 0.5 + std::atan(t) / M_PI, 1e-13) << t;
    EXPECT_NEAR(StudentTCdf(t, 2), 0.5 + t / (2 * std::sqrt(2 + t * t)), 1e-13)
        << t;
  }
  EXPECT_NEAR(StudentTCdf(2.228139, 10), 0.975, 1e-7);
  EXPECT_NEAR(StudentTCdf(1e6, 1e9), 1, 1e-15);  // normal limit
  EXPECT_TRUE(std::isnan(StudentTCdf(1, 0)));
}

TEST(DistributionTest, StudentTQuantileKnownValues) {
  EXPECT_NEAR(StudentTQuantile(0.975, 10), 2.228139, 1e-6);
  EXPECT_NEAR(StudentTQuantile(0.975, 1), 12.706205, 1e-6);
  EXPECT_NEAR(StudentTQuantile(0.975, 7), 2.364624, 1e-6);
  EXPECT_NEAR(StudentTQuantile(0.995, 30), 2.749996, 1e-6);
  EXPECT_NEAR(StudentTQuantile(0.025, 10), -2.228139, 1e-6);
  EXPECT_NEAR(StudentTCdf(StudentTQuantile(0.9, 2.5), 2.5), 0.9,
              1e-13);  // non-integer df
  EXPECT_EQ(StudentTQuantile(0.5, 4), 0);
  EXPECT_NEAR(StudentTCdf(StudentTQuantile(1e-9, 3), 3), 1e-9, 1e-15);
  EXPECT_TRUE(std::isinf(StudentTQuantile(1, 3)));
  EXPECT_TRUE(std::isnan(StudentTQuantile(0.9, -1)));
}

const std::vector<double> kBootBaseline = {100,  101,   99.5,  100.7,
                                           98.9, 100.2, 101.4, 99.1};
const std::vector<double> kBootCandidate = {90.2, 91.5, 89.7, 90.9,
                                            92.0, 89.1, 90.4, 91.1};

TEST(BootstrapTest, SameSeedGivesSameInterval) {
  const Interval a =
      BootstrapMedianRatioCI(kBootCandidate, kBootBaseline, 2000, 0.95, 7);
  const Interval b =
      BootstrapMedianRatioCI(kBootCandidate, kBootBaseline, 2000, 0.95, 7);
  EXPECT_EQ(a.low, b.low);
  EXPECT_EQ(a.high, b.high);
}

TEST(BootstrapTest, DifferentSeedsCanDiffer) {
  const Interval a =
      BootstrapMedianRatioCI(kBootCandidate, kBootBaseline, 200, 0.95, 1);
  bool any_differs = false;
  for (uint64_t seed = 2; seed < 6; ++seed) {
    const Interval b =
        BootstrapMedianRatioCI(kBootCandidate, kBootBaseline, 200, 0.95, seed);
    any_differs = any_differs || a.low != b.low || a.high != b.high;
  }
  EXPECT_TRUE(any_differs);
}

TEST(BootstrapTest, IntervalBracketsTheObservedRatio) {
  const Interval ci =
      BootstrapMedianRatioCI(kBootCandidate, kBootBaseline, 2000, 0.95, 3);
  const double ratio = Median(kBootCandidate) / Median(kBootBaseline);
  EXPECT_LT(ci.low, ratio);
  EXPECT_GT(ci.high, ratio);
  // Every resampled median lies within the sample ranges.
  EXPECT_GE(ci.low, 89.1 / 101.4);
  EXPECT_LE(ci.high, 92.0 / 98.9);
}

TEST(BootstrapTest, ConstantSamplesGiveAPointInterval) {
  const Interval ci = BootstrapMedianRatioCI(
      std::vector<double>{3, 3, 3}, std::vector<double>{2, 2}, 100, 0.9, 0);
  EXPECT_DOUBLE_EQ(ci.low, 1.5);
  EXPECT_DOUBLE_EQ(ci.high, 1.5);
}

TEST(BootstrapTest, InvalidArgumentsGiveNaN) {
  EXPECT_TRUE(
      std::isnan(BootstrapMedianRatioCI({}, kBootBaseline, 10, 0.95, 0).low));
  EXPECT_TRUE(std::isnan(
      BootstrapMedianRatioCI(kBootCandidate, kBootBaseline, 0, 0.95, 0).low));
  EXPECT_TRUE(std::isnan(
      BootstrapMedianRatioCI(kBootCandidate, kBootBaseline, 10, 1.0, 0).low));
}

TEST(BootstrapTest, ZeroBaselineMedianDoesNotProduceNaN) {
  const Interval ci = BootstrapMedianRatioCI(
      std::vector<double>{0, 0, 1}, std::vector<double>{0, 0, 1}, 500, 0.95, 0);
  EXPECT_FALSE(std::isnan(ci.low));
  EXPECT_FALSE(std::isnan(ci.high));
}

TEST(WeightedBootstrapTest, OneGroupIsTheMedianRatioInterval) {
  const Interval one =
      BootstrapMedianRatioCI(kBootCandidate, kBootBaseline, 2000, 0.95, 11);
  const RatioGroup group{kBootCandidate, kBootBaseline, 3.0};
  const Interval weighted =
      BootstrapWeightedMedianRatioCI({&group, 1}, 2000, 0.95, 11);
  EXPECT_NEAR(weighted.low, one.low, 1e-12);
  EXPECT_NEAR(weighted.high, one.high, 1e-12);
}

TEST(WeightedBootstrapTest, ConstantGroupsGiveTheWeightedGeometricMean) {
  const std::vector<double> nine = {9, 9, 9}, ten = {10, 10}, eleven = {11, 11};
  const std::vector<RatioGroup> groups = {{nine, ten, 3}, {eleven, ten, 1}};
  const Interval ci = BootstrapWeightedMedianRatioCI(groups, 100, 0.95, 0);
  const double expected = std::exp((3 * std::log(0.9) + std::log(1.1)) / 4);
  EXPECT_NEAR(ci.low, expected, 1e-12);
  EXPECT_NEAR(ci.high, expected, 1e-12);
}

TEST(WeightedBootstrapTest, MoreGroupsNarrowTheInterval) {
  const RatioGroup g{kBootCandidate, kBootBaseline, 1};
  const std::vector<RatioGroup> four(4, g);
  const Interval one = BootstrapWeightedMedianRatioCI({&g, 1}, 4000, 0.95, 5);
  const Interval many = BootstrapWeightedMedianRatioCI(four, 4000, 0.95, 5);
  EXPECT_LT(many.high - many.low, one.high - one.low);
  const double ratio = Median(kBootCandidate) / Median(kBootBaseline);
  EXPECT_LT(many.low, ratio);
  EXPECT_GT(many.high, ratio);
}

TEST(WeightedBootstrapTest, InvalidArgumentsGiveNaN) {
  const std::vector<double> empty;
  const RatioGroup good{kBootCandidate, kBootBaseline, 1};
  const RatioGroup no_samples{empty, kBootBaseline, 1};
  const RatioGroup zero_weight{kBootCandidate, kBootBaseline, 0};
  EXPECT_TRUE(std::isnan(BootstrapWeightedMedianRatioCI({}, 10, 0.95, 0).low));
  EXPECT_TRUE(std::isnan(
      BootstrapWeightedMedianRatioCI({&no_samples, 1}, 10, 0.95, 0).low));
  EXPECT_TRUE(std::isnan(
      BootstrapWeightedMedianRatioCI({&zero_weight, 1}, 10, 0.95, 0).low));
  EXPECT_TRUE(
      std::isnan(BootstrapWeightedMedianRatioCI({&good, 1}, 0, 0.95, 0).low));
}

TEST(WeightedBootstrapTest, ZeroBaselineMedianWidensInsteadOfNaN) {
  const std::vector<double> zeros = {0, 0, 0}, ones = {1, 1, 1};
  const std::vector<RatioGroup> groups = {{ones, zeros, 1}, {ones, ones, 1}};
  const Interval ci = BootstrapWeightedMedianRatioCI(groups, 50, 0.95, 0);
  EXPECT_TRUE(std::isinf(ci.high));
  EXPECT_FALSE(std::isnan(ci.low));
}

TEST(OutlierTest, RemovesFarValueAndRecordsIndex) {
  const std::vector<double> xs = {10.0, 10.1, 9.9, 10.2, 9.8, 50.0, 10.05};
  const OutlierResult r = RemoveOutliers(xs);
  EXPECT_THAT(r.removed, ElementsAre(50.0));
  EXPECT_THAT(r.removed_indices, ElementsAre(5u));
  EXPECT_THAT(r.kept, ElementsAre(10.0, 10.1, 9.9, 10.2, 9.8, 10.05));
}

TEST(OutlierTest, KeepsEverythingWhenMadIsZero) {
  const OutlierResult r = RemoveOutliers(std::vector<double>{5, 5, 5, 5, 100});
  EXPECT_THAT(r.removed, IsEmpty());
  EXPECT_EQ(r.kept.size(), 5u);
}

TEST(OutlierTest, ThresholdIsStrictAndScalesWithK) {
  // Median 0, MAD 1, sigma 1.4826: with k = 2 the limit is 2.9652.
  // 2.9652 sits exactly on the limit and stays; -3 is beyond it.
  const std::vector<double> xs = {-3.0, -1, -1, 0, 1, 1, 2.9652};
  const OutlierResult r = RemoveOutliers(xs, 2.0);
  EXPECT_THAT(r.removed_indices, ElementsAre(0u));
  EXPECT_THAT(r.removed, ElementsAre(-3.0));
  EXPECT_THAT(RemoveOutliers(xs, 3.0).removed, IsEmpty());
  EXPECT_THAT(RemoveOutliers(xs, 1.0).removed_indices, ElementsAre(0u, 6u));
}

TEST(OutlierTest, EmptyInput) {
  const OutlierResult r = RemoveOutliers({});
  EXPECT_THAT(r.kept, IsEmpty());
  EXPECT_THAT(r.removed, IsEmpty());
}

}  // namespace
}  // namespace benchfleet::stats
