// Descriptive statistics, two-sample tests and a seeded bootstrap for benchmark
// samples. Used by the decision engine (controller/verdict) to compare a
// candidate's measured runs with the baseline's, and by reports to print the
// numbers behind a verdict. Every function is pure and deterministic: no I/O,
// no global state, the same output for the same input (and seed) on every
// platform. Thread-safe.
//
// Conventions: empty input is not an error; functions document what they return
// for it. Samples are never modified; functions that need order work on a copy.
#ifndef BENCHFLEET_CONTROLLER_STATS_STATS_H_
#define BENCHFLEET_CONTROLLER_STATS_STATS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace benchfleet::stats {

// Descriptive statistics of one sample.
struct Summary {
  size_t n = 0;
  double mean = 0;
  double median = 0;
  double stddev = 0;  // sample standard deviation (divisor n-1); 0 when n < 2
  double cv = 0;      // stddev / |mean|; 0 when n < 2 or mean == 0
  double min = 0;
  double max = 0;
  double mad = 0;  // raw median absolute deviation from the median (not scaled
                   // by 1.4826)
  double ci95_low =
      0;  // 95% confidence interval of the mean (Student t, n-1 df);
  double ci95_high = 0;  // both equal the mean when n < 2
};

// Returns the summary of `xs`. All fields are 0 when `xs` is empty.
Summary Summarize(absl::Span<const double> xs);

// Returns the median of `xs` (mean of the two middle values for even n); 0 when
// empty.
double Median(absl::Span<const double> xs);

// Result of a two-sided two-sample test.
struct TestResult {
  double statistic = 0;  // the test's statistic (see each test)
  double p_value = 1;    // two-sided; 1 when the test cannot be computed
  bool exact =
      false;  // true when p_value comes from the exact null distribution
};

// Largest sample size (per group) for which MannWhitneyU uses the exact
// distribution.
inline constexpr size_t kMannWhitneyExactMaxN = 50;

// Two-sided Mann-Whitney U (Wilcoxon rank-sum) test of `a` against `b`.
// statistic = U of `a`: the number of pairs (a_i, b_j) with a_i > b_j, ties
// counting 1/2 (R's `wilcox.test` calls it W). When there are no ties and both
// samples have at most kMannWhitneyExactMaxN values, p_value is exact (the
// permutation distribution of U, computed by dynamic programming) and `exact`
// is true. Otherwise p_value comes from the normal approximation with
// tie-corrected variance and a continuity correction of 1/2. Returns {0, 1,
// false} when either sample is empty, and p_value 1 when every value is tied.
TestResult MannWhitneyU(absl::Span<const double> a, absl::Span<const double> b);

// Two-sided Welch's unequal-variance t-test of mean(a) against mean(b).
// statistic = t = (mean(a) - mean(b)) / sqrt(var(a)/n_a + var(b)/n_b), with the
// Welch-Satterthwaite degrees of freedom. Returns {0, 1, false} when either
// sample has fewer than 2 values. When both variances are 0: p_value 1 if the
// means are equal, else statistic = +-infinity and p_value 0. `exact` is always
// false.
TestResult WelchT(absl::Span<const double> a, absl::Span<const double> b);

// Same as WelchT, also returning the Welch-Satterthwaite degrees of freedom in
// `*df` (0 when the test cannot be computed; infinity when both variances are
// 0).
TestResult WelchT(absl::Span<const double> a, absl::Span<const double> b,
                  double* df);

// Standard normal cumulative distribution function P(Z <= z).
double NormalCdf(double z);

// Inverse of NormalCdf: the z with NormalCdf(z) == p, accurate to ~1e-12 for
// p in [1e-300, 1 - 1e-16]. Returns -infinity for p <= 0, +infinity for p >= 1,
// NaN for NaN.
double NormalQuantile(double p);

// Regularized incomplete beta function I_x(a, b) for a, b > 0 and x in [0, 1]
// (continued fraction, ~1e-14 relative accuracy). NaN outside the domain.
double RegularizedIncompleteBeta(double x, double a, double b);

// Student t cumulative distribution function P(T <= t) with `df` > 0 degrees of
// freedom (df need not be an integer). NaN when df <= 0 or an argument is NaN.
double StudentTCdf(double t, double df);

// Inverse of StudentTCdf: the t with StudentTCdf(t, df) == p, for p in (0, 1)
// and df > 0. Returns -infinity for p <= 0, +infinity for p >= 1, NaN when df
// <= 0 or p is NaN.
double StudentTQuantile(double p, double df);

// A closed interval [low, high].
struct Interval {
  double low = 0;
  double high = 0;
};

// Percentile bootstrap confidence interval of median(candidate) /
// median(baseline). Each of `iterations` rounds resamples both groups
// independently, with replacement and at their own sizes, and takes the ratio
// of the resampled medians; the interval is the (1-confidence)/2 and
// (1+confidence)/2 quantiles of those ratios (linear interpolation).
// Reproducible for a given seed on every platform: std::mt19937_64 (fully
// specified by the standard) and our own unbiased index mapping. A resample
// whose baseline median is 0 gives ratio 1 if the candidate median is 0 too,
// else +-infinity. Returns {NaN, NaN} when a sample is empty, iterations < 1 or
// confidence is not in (0, 1).
Interval BootstrapMedianRatioCI(absl::Span<const double> candidate,
                                absl::Span<const double> baseline,
                                int iterations, double confidence,
                                uint64_t seed);

// One input of an aggregate: its two samples and its weight (> 0).
struct RatioGroup {
  absl::Span<const double> candidate;
  absl::Span<const double> baseline;
  double weight = 1;
};

// Percentile bootstrap confidence interval of the weighted geometric mean of
// the groups' median ratios, exp(sum(w_i log(median(c_i) / median(b_i))) /
// sum(w_i)): the aggregate DESIGN.md §4 decides on. Each of `iterations`
// rounds resamples every group's two samples (as BootstrapMedianRatioCI does),
// so the interval carries the uncertainty of every input at once. A round in
// which some resampled median ratio is not a positive finite number counts as
// +infinity when the candidate's median is the larger (or the ratio is
// undefined) and as 0 otherwise, which only widens the interval. Reproducible
// for a given seed. Returns {NaN, NaN} when there are no groups, a group has
// an empty sample or a weight that is not positive and finite, iterations < 1
// or confidence is not in (0, 1).
Interval BootstrapWeightedMedianRatioCI(absl::Span<const RatioGroup> groups,
                                        int iterations, double confidence,
                                        uint64_t seed);

// Result of RemoveOutliers; `kept` and `removed` preserve the input order.
struct OutlierResult {
  std::vector<double> kept;
  std::vector<double> removed;
  std::vector<size_t> removed_indices;  // indices into the input, ascending
};

// Robust outlier removal: centre = median, sigma = 1.4826 * MAD; removes every
// x with |x - centre| > k * sigma. Nothing is removed when MAD == 0 (more than
// half the values are identical), so a quiet sample is never trimmed by its own
// exact repeats.
OutlierResult RemoveOutliers(absl::Span<const double> xs, double k = 2.0);

}  // namespace benchfleet::stats

#endif  // BENCHFLEET_CONTROLLER_STATS_STATS_H_
