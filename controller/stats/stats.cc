#include "controller/stats/stats.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "absl/types/span.h"

namespace benchfleet::stats {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

// Median of `v`, reordering it; 0 when empty.
double MedianInPlace(std::vector<double>& v) {
  if (v.empty()) return 0;
  const size_t mid = v.size() / 2;
  std::nth_element(v.begin(), v.begin() + mid, v.end());
  const double upper = v[mid];
  if (v.size() % 2 == 1) return upper;
  // After nth_element every element before `mid` is <= v[mid]; the lower middle
  // value is their maximum.
  const double lower = *std::max_element(v.begin(), v.begin() + mid);
  return lower + (upper - lower) / 2;
}

// log(Gamma(x)) for x > 0. Our own rather than std::lgamma, which writes the
// global `signgam` in glibc and so is not thread-safe. Shifts x up to >= 15
// with Gamma(x+1) = x Gamma(x), then uses the Stirling series; absolute error <
// 1e-14.
double LogGamma(double x) {
  double shift = 0;
  while (x < 15) {
    shift += std::log(x);
    x += 1;
  }
  const double inv = 1 / x;
  const double inv2 = inv * inv;
  // Stirling series coefficients B_{2k} / (2k (2k-1)).
  const double series =
      inv *
      (1.0 / 12 +
       inv2 *
           (-1.0 / 360 +
            inv2 * (1.0 / 1260 +
                    inv2 * (-1.0 / 1680 +
                            inv2 * (1.0 / 1188 + inv2 * (-691.0 / 360360))))));
  return (x - 0.5) * std::log(x) - x + 0.5 * std::log(2 * M_PI) + series -
         shift;
}

// Continued fraction for I_x(a, b) (valid when x < (a+1)/(a+b+2)), evaluated
// with the modified Lentz method. Returns the value of 1 + d1/(1 + d2/(1 +
// ...)).
double BetaContinuedFraction(double x, double a, double b) {
  constexpr double kTiny = 1e-300;
  constexpr double kEps = 1e-16;
  double f = 1, c = 1, d = 0;
  for (int j = 1; j <= 10000; ++j) {
    const int m = j / 2;
    double coeff;
    if (j % 2 == 1) {
      coeff = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1));
    } else {
      coeff = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m));
    }
    d = 1 + coeff * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1 + coeff / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    const double delta = c * d;
    f *= delta;
    if (std::fabs(delta - 1) < kEps) break;
  }
  return f;
}

// I_x(a, b) given both x and 1-x, so that callers that know 1-x more precisely
// than 1 - x can pass it (the t distribution near t = 0).
double IncompleteBeta(double x, double one_minus_x, double a, double b) {
  if (x <= 0) return 0;
  if (one_minus_x <= 0) return 1;
  const double log_front = a * std::log(x) + b * std::log(one_minus_x) -
                           (LogGamma(a) + LogGamma(b) - LogGamma(a + b));
  if (x < (a + 1) / (a + b + 2)) {
    return std::exp(log_front) / (a * BetaContinuedFraction(x, a, b));
  }
  return 1 -
         std::exp(log_front) / (b * BetaContinuedFraction(one_minus_x, b, a));
}

// Solves cdf(t) == q for t < 0, given 0 < q < 0.5 and an increasing `cdf` with
// cdf(0) == 0.5, by bracketing and bisection to full double precision.
template <typename Cdf>
double SolveLowerTail(double q, double floor, Cdf cdf) {
  double lo = -1;
  double hi = 0;
  while (cdf(lo) >= q) {
    if (lo <= floor) return floor;
    hi = lo;
    lo = std::max(lo * 2, floor);
  }
  for (int i = 0; i < 2000; ++i) {
    const double mid = lo + (hi - lo) / 2;
    if (mid <= lo || mid >= hi) break;
    if (cdf(mid) < q) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo + (hi - lo) / 2;
}

// Uniform index in [0, n), n >= 1, from a 64-bit generator. Rejects the few
// values that would bias `r % n`; unlike std::uniform_int_distribution this is
// the same everywhere.
size_t UniformIndex(std::mt19937_64& rng, size_t n) {
  const uint64_t range = n;
  // 2^64 mod n: values below it would make some residues more likely.
  const uint64_t threshold = (0 - range) % range;
  uint64_t r;
  do {
    r = rng();
  } while (r < threshold);
  return static_cast<size_t>(r % range);
}

// Linear-interpolation quantile (R's type 7) of an ascending, non-empty vector.
double SortedQuantile(const std::vector<double>& sorted, double q) {
  const double h = (sorted.size() - 1) * q;
  const size_t lo = static_cast<size_t>(std::floor(h));
  if (lo + 1 >= sorted.size()) return sorted.back();
  const double a = sorted[lo];
  const double b = sorted[lo + 1];
  if (a == b) return a;  // also keeps equal infinities from turning into NaN
  return a + (h - lo) * (b - a);
}

// P(U <= u_max) for the Mann-Whitney U of a sample of n1 against one of n2
// under the null hypothesis, no ties. p(m, n, u) = m/(m+n) p(m-1, n, u-n) +
// n/(m+n) p(m, n-1, u): the largest of the m+n values belongs to the first
// sample (and beats all n of the second) with probability m/(m+n). Works in
// probabilities, so nothing overflows for n = 50.
double ExactMannWhitneyLowerTail(size_t n1, size_t n2, size_t u_max) {
  const size_t width = u_max + 1;
  // Row n of the table for the current m is table[n * width, (n+1) * width).
  std::vector<double> prev((n2 + 1) * width, 0.0);
  std::vector<double> cur((n2 + 1) * width, 0.0);
  for (size_t n = 0; n <= n2; ++n) prev[n * width] = 1;  // m = 0: U is always 0
  for (size_t m = 1; m <= n1; ++m) {
    std::fill(cur.begin(), cur.end(), 0.0);
    cur[0] = 1;  // n = 0: U is always 0
    for (size_t n = 1; n <= n2; ++n) {
      const double wm = static_cast<double>(m) / (m + n);
      const double wn = static_cast<double>(n) / (m + n);
      double* row = &cur[n * width];
      const double* left = &cur[(n - 1) * width];
      const double* up = &prev[n * width];
      for (size_t u = 0; u < width; ++u) {
        row[u] = wn * left[u] + (u >= n ? wm * up[u - n] : 0.0);
      }
    }
    std::swap(prev, cur);
  }
  const double* last = &prev[n2 * width];
  double sum = 0;
  for (size_t u = 0; u < width; ++u) sum += last[u];
  return std::min(1.0, sum);
}

double SampleVariance(absl::Span<const double> xs, double mean) {
  double ss = 0;
  for (double x : xs) ss += (x - mean) * (x - mean);
  return ss / (xs.size() - 1);
}

double Mean(absl::Span<const double> xs) {
  double sum = 0;
  for (double x : xs) sum += x;
  return sum / xs.size();
}

}  // namespace

double Median(absl::Span<const double> xs) {
  std::vector<double> copy(xs.begin(), xs.end());
  return MedianInPlace(copy);
}

Summary Summarize(absl::Span<const double> xs) {
  Summary s;
  s.n = xs.size();
  if (xs.empty()) return s;
  s.mean = Mean(xs);
  s.median = Median(xs);
  const auto [min_it, max_it] = std::minmax_element(xs.begin(), xs.end());
  s.min = *min_it;
  s.max = *max_it;
  std::vector<double> deviations;
  deviations.reserve(xs.size());
  for (double x : xs) deviations.push_back(std::fabs(x - s.median));
  s.mad = MedianInPlace(deviations);
  s.ci95_low = s.ci95_high = s.mean;
  if (s.n >= 2) {
    s.stddev = std::sqrt(SampleVariance(xs, s.mean));
    if (s.mean != 0) s.cv = s.stddev / std::fabs(s.mean);
    const double half = StudentTQuantile(0.975, static_cast<double>(s.n - 1)) *
                        s.stddev / std::sqrt(s.n);
    s.ci95_low = s.mean - half;
    s.ci95_high = s.mean + half;
  }
  return s;
}

TestResult MannWhitneyU(absl::Span<const double> a,
                        absl::Span<const double> b) {
  TestResult result;
  if (a.empty() || b.empty()) return result;
  const size_t n1 = a.size();
  const size_t n2 = b.size();
  const size_t total = n1 + n2;

  // (value, belongs to a), sorted by value; ties get the average of their
  // ranks.
  std::vector<std::pair<double, bool>> all;
  all.reserve(total);
  for (double x : a) all.emplace_back(x, true);
  for (double x : b) all.emplace_back(x, false);
  std::sort(all.begin(), all.end(),
            [](const auto& l, const auto& r) { return l.first < r.first; });
  double rank_sum_a = 0;
  double tie_term = 0;  // sum over tie groups of t^3 - t
  for (size_t i = 0; i < total;) {
    size_t j = i;
    while (j + 1 < total && all[j + 1].first == all[i].first) ++j;
    const double t = static_cast<double>(j - i + 1);
    const double average_rank =
        (static_cast<double>(i + 1) + static_cast<double>(j + 1)) / 2;
    for (size_t k = i; k <= j; ++k) {
      if (all[k].second) rank_sum_a += average_rank;
    }
    tie_term += t * t * t - t;
    i = j + 1;
  }
  const double u = rank_sum_a - static_cast<double>(n1) * (n1 + 1) / 2;
  result.statistic = u;
  const double pairs = static_cast<double>(n1) * n2;

  if (tie_term == 0 && n1 <= kMannWhitneyExactMaxN &&
      n2 <= kMannWhitneyExactMaxN) {
    // Without ties U is an integer; the distribution is symmetric about
    // n1*n2/2, so the smaller tail is the lower tail of min(U, n1*n2 - U).
    const size_t u_int = static_cast<size_t>(std::llround(u));
    const size_t lower = std::min(u_int, static_cast<size_t>(n1 * n2) - u_int);
    result.p_value =
        std::min(1.0, 2 * ExactMannWhitneyLowerTail(n1, n2, lower));
    result.exact = true;
    return result;
  }

  const double n = static_cast<double>(total);
  const double variance = pairs / 12 * ((n + 1) - tie_term / (n * (n - 1)));
  if (variance <= 0) return result;  // every value tied: no evidence either way
  const double diff = u - pairs / 2;
  const double correction = diff > 0 ? 0.5 : (diff < 0 ? -0.5 : 0.0);
  const double z = (diff - correction) / std::sqrt(variance);
  result.p_value = std::min(1.0, 2 * NormalCdf(-std::fabs(z)));
  return result;
}

TestResult WelchT(absl::Span<const double> a, absl::Span<const double> b) {
  double df;
  return WelchT(a, b, &df);
}

TestResult WelchT(absl::Span<const double> a, absl::Span<const double> b,
                  double* df) {
  TestResult result;
  *df = 0;
  if (a.size() < 2 || b.size() < 2) return result;
  const double mean_a = Mean(a);
  const double mean_b = Mean(b);
  const double se2_a = SampleVariance(a, mean_a) / a.size();
  const double se2_b = SampleVariance(b, mean_b) / b.size();
  const double se2 = se2_a + se2_b;
  const double diff = mean_a - mean_b;
  if (se2 == 0) {
    *df = kInf;
    if (diff != 0) {
      result.statistic = diff > 0 ? kInf : -kInf;
      result.p_value = 0;
    }
    return result;
  }
  const double t = diff / std::sqrt(se2);
  *df = se2 * se2 /
        (se2_a * se2_a / (a.size() - 1) + se2_b * se2_b / (b.size() - 1));
  result.statistic = t;
  result.p_value = std::min(1.0, 2 * StudentTCdf(-std::fabs(t), *df));
  return result;
}

double NormalCdf(double z) { return 0.5 * std::erfc(-z / M_SQRT2); }

double NormalQuantile(double p) {
  if (std::isnan(p)) return kNaN;
  if (p <= 0) return -kInf;
  if (p >= 1) return kInf;
  if (p == 0.5) return 0;
  const double q = std::min(p, 1 - p);
  // NormalCdf(-40) underflows to 0, so the bracket always closes above -40.
  const double z = SolveLowerTail(q, -40, NormalCdf);
  return p < 0.5 ? z : -z;
}

double RegularizedIncompleteBeta(double x, double a, double b) {
  if (std::isnan(x) || std::isnan(a) || std::isnan(b) || a <= 0 || b <= 0 ||
      x < 0 || x > 1) {
    return kNaN;
  }
  return IncompleteBeta(x, 1 - x, a, b);
}

double StudentTCdf(double t, double df) {
  if (std::isnan(t) || std::isnan(df) || df <= 0) return kNaN;
  if (std::isinf(t)) return t > 0 ? 1 : 0;
  // Beyond this the t distribution equals the normal to ~1e-8, and LogGamma's
  // absolute error on huge arguments would dominate.
  if (df > 1e7) return NormalCdf(t);
  const double t2 = t * t;
  // P(|T| > |t|) = I_{df/(df+t^2)}(df/2, 1/2).
  const double two_tail =
      IncompleteBeta(df / (df + t2), t2 / (df + t2), df / 2, 0.5);
  return t > 0 ? 1 - two_tail / 2 : two_tail / 2;
}

double StudentTQuantile(double p, double df) {
  if (std::isnan(p) || std::isnan(df) || df <= 0) return kNaN;
  if (p <= 0) return -kInf;
  if (p >= 1) return kInf;
  if (p == 0.5) return 0;
  const double q = std::min(p, 1 - p);
  const double t =
      SolveLowerTail(q, -std::numeric_limits<double>::max() / 4,
                     [df](double x) { return StudentTCdf(x, df); });
  return p < 0.5 ? t : -t;
}

Interval BootstrapMedianRatioCI(absl::Span<const double> candidate,
                                absl::Span<const double> baseline,
                                int iterations, double confidence,
                                uint64_t seed) {
  if (candidate.empty() || baseline.empty() || iterations < 1 ||
      !(confidence > 0) || !(confidence < 1)) {
    return {kNaN, kNaN};
  }
  std::mt19937_64 rng(seed);
  std::vector<double> resample_c(candidate.size());
  std::vector<double> resample_b(baseline.size());
  std::vector<double> ratios;
  ratios.reserve(iterations);
  for (int i = 0; i < iterations; ++i) {
    for (double& x : resample_c)
      x = candidate[UniformIndex(rng, candidate.size())];
    for (double& x : resample_b)
      x = baseline[UniformIndex(rng, baseline.size())];
    const double mc = MedianInPlace(resample_c);
    const double mb = MedianInPlace(resample_b);
    double ratio;
    if (mb != 0) {
      ratio = mc / mb;
    } else if (mc == 0) {
      ratio = 1;
    } else {
      ratio = std::copysign(kInf, mc);
    }
    ratios.push_back(ratio);
  }
  std::sort(ratios.begin(), ratios.end());
  const double tail = (1 - confidence) / 2;
  return {SortedQuantile(ratios, tail), SortedQuantile(ratios, 1 - tail)};
}

Interval BootstrapWeightedMedianRatioCI(absl::Span<const RatioGroup> groups,
                                        int iterations, double confidence,
                                        uint64_t seed) {
  if (groups.empty() || iterations < 1 || !(confidence > 0) ||
      !(confidence < 1)) {
    return {kNaN, kNaN};
  }
  double weight_sum = 0;
  for (const RatioGroup& g : groups) {
    if (g.candidate.empty() || g.baseline.empty() || !std::isfinite(g.weight) ||
        !(g.weight > 0)) {
      return {kNaN, kNaN};
    }
    weight_sum += g.weight;
  }
  std::mt19937_64 rng(seed);
  std::vector<double> resample_c;
  std::vector<double> resample_b;
  std::vector<double> ratios;
  ratios.reserve(iterations);
  for (int i = 0; i < iterations; ++i) {
    double log_sum = 0;
    int degenerate = 0;  // +1: a ratio without a finite log above, -1 below
    for (const RatioGroup& g : groups) {
      resample_c.resize(g.candidate.size());
      resample_b.resize(g.baseline.size());
      for (double& x : resample_c)
        x = g.candidate[UniformIndex(rng, g.candidate.size())];
      for (double& x : resample_b)
        x = g.baseline[UniformIndex(rng, g.baseline.size())];
      const double mc = MedianInPlace(resample_c);
      const double mb = MedianInPlace(resample_b);
      const double ratio = mc / mb;
      if (std::isfinite(ratio) && ratio > 0) {
        log_sum += g.weight * std::log(ratio);
      } else if (degenerate == 0) {
        degenerate = (std::isnan(ratio) || mc > mb) ? 1 : -1;
      }
    }
    if (degenerate > 0) {
      ratios.push_back(kInf);
    } else if (degenerate < 0) {
      ratios.push_back(0);
    } else {
      ratios.push_back(std::exp(log_sum / weight_sum));
    }
  }
  std::sort(ratios.begin(), ratios.end());
  const double tail = (1 - confidence) / 2;
  return {SortedQuantile(ratios, tail), SortedQuantile(ratios, 1 - tail)};
}

OutlierResult RemoveOutliers(absl::Span<const double> xs, double k) {
  OutlierResult result;
  const double centre = Median(xs);
  std::vector<double> deviations;
  deviations.reserve(xs.size());
  for (double x : xs) deviations.push_back(std::fabs(x - centre));
  const double mad = MedianInPlace(deviations);
  const double limit = k * 1.4826 * mad;
  for (size_t i = 0; i < xs.size(); ++i) {
    if (mad > 0 && std::fabs(xs[i] - centre) > limit) {
      result.removed.push_back(xs[i]);
      result.removed_indices.push_back(i);
    } else {
      result.kept.push_back(xs[i]);
    }
  }
  return result;
}

}  // namespace benchfleet::stats
