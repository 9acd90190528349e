// Shared by the verdict tests (verdict_test.cc, verdict_noise_test.cc): sample
// builders with exactly known medians and spreads, and the default policy.
#ifndef BENCHFLEET_TESTS_CONTROLLER_VERDICT_TESTING_H_
#define BENCHFLEET_TESTS_CONTROLLER_VERDICT_TESTING_H_

#include <cmath>
#include <cstdint>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/spec.h"
#include "controller/stats/stats.h"
#include "controller/verdict/verdict.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet::verdict::testing_helpers {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// `n` (odd) values centred exactly on `median`, evenly `step` apart, in a
// shuffled but fixed order: median + k*step for k = -(n/2)..(n/2). The median
// is exact (offset 0).
inline std::vector<double> Around(double median, int n, double step) {
  std::vector<double> xs;
  for (int i = 0; i < n; ++i) {
    const int k = (i * 7) % n - n / 2;  // 7 is coprime with the sizes used here
    xs.push_back(median + k * step);
  }
  return xs;
}

// Baseline around 100 with +-0.5% jitter: CV ~0.3%.
inline std::vector<double> QuietBaseline() { return Around(100, 11, 0.1); }

inline std::vector<double> Scaled(std::vector<double> xs, double factor) {
  for (double& x : xs) x *= factor;
  return xs;
}

inline InputSamples Input(std::string name, std::vector<double> baseline,
                          std::vector<double> candidate, double weight = 1.0) {
  InputSamples in;
  in.input = std::move(name);
  in.weight = weight;
  in.baseline = std::move(baseline);
  in.candidate = std::move(candidate);
  return in;
}

// One input whose candidate is the quiet baseline scaled by `factor`.
inline CandidateEvidence ScaledEvidence(double factor,
                                        bool at_max_runs = false) {
  CandidateEvidence e;
  e.variant = "cand";
  e.at_max_runs = at_max_runs;
  e.inputs.push_back(
      Input("in", QuietBaseline(), Scaled(QuietBaseline(), factor)));
  return e;
}

// Five inputs, each candidate the baseline scaled by `factor`.
inline CandidateEvidence FiveInputs(double factor) {
  CandidateEvidence e;
  e.variant = "cand";
  for (const char* name : {"a", "b", "c", "d", "e"}) {
    e.inputs.push_back(
        Input(name, QuietBaseline(), Scaled(QuietBaseline(), factor)));
  }
  return e;
}

inline DecisionPolicy FirstPass() { return DecisionPolicy{}; }

}  // namespace benchfleet::verdict::testing_helpers

#endif  // BENCHFLEET_TESTS_CONTROLLER_VERDICT_TESTING_H_
