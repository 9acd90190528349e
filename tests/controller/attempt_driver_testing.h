// Shared by the AttemptDriver tests (attempt_driver_test.cc, _history_test.cc,
// _kill_test.cc): a spec builder and a fake "agent" that turns each PlannedStep
// into a StepOutcome, so the driver runs without processes.
#ifndef BENCHFLEET_TESTS_CONTROLLER_ATTEMPT_DRIVER_TESTING_H_
#define BENCHFLEET_TESTS_CONTROLLER_ATTEMPT_DRIVER_TESTING_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "common/spec.h"
#include "common/spec_loader.h"
#include "controller/attempt/attempt_driver.h"
#include "controller/report/report.h"
#include "controller/verdict/verdict.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace benchfleet {
namespace attempt_testing {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

inline constexpr char kWorkdir[] = "/srv/exp";
inline constexpr int64_t kMs = 1'000'000;

inline CommandSpec Argv(std::vector<std::string> argv) {
  CommandSpec c;
  c.argv = std::move(argv);
  return c;
}

inline CommandSpec Shell(std::string shell) {
  CommandSpec c;
  c.shell = std::move(shell);
  return c;
}

inline VariantSpec Variant(const std::string& name) {
  VariantSpec v;
  v.name = name;
  v.command = Argv({"./bench", "--variant", name, "{input}"});
  return v;
}

// A valid spec: baseline "base" plus the named candidates, the given inputs, no
// setup, no warmups, 10 runs (max_runs 10: no extension unless a test raises
// it), interleaved.
inline ExperimentSpec MakeSpec(const std::vector<std::string>& candidates,
                               const std::vector<std::string>& inputs = {
                                   "tiny"}) {
  ExperimentSpec spec;
  spec.api_version = "benchfleet/v1";
  spec.kind = "Experiment";
  spec.name = "driver-test";
  spec.workdir = kWorkdir;
  spec.command = Argv({"./bench", "{input}"});
  for (const std::string& in : inputs) {
    InputSpec i;
    i.name = in;
    i.path = "inputs/" + in + ".txt";
    spec.inputs.push_back(i);
  }
  spec.warmup = 0;
  spec.runs = 10;
  spec.max_runs = 10;
  spec.timeout = absl::Seconds(10);
  spec.variants.push_back(Variant("base"));
  for (const std::string& c : candidates) spec.variants.push_back(Variant(c));
  return spec;
}

// How the fake agent answers: a function of the step (and the number of earlier
// steps of the same variant), returning the outcome with `seq` filled in by the
// harness.
using Agent = std::function<StepOutcome(const PlannedStep&)>;

// Median-centred, deterministic +-1% noise so that samples are not all
// identical.
inline int64_t Jitter(int64_t wall_ns, int64_t seq) {
  const int64_t k = (seq * 7919) % 11 - 5;  // -5..5
  return wall_ns + wall_ns * k / 500;
}

// A well-behaved agent: every variant exits 0 with the same output; measured
// runs take `wall_ms[variant]` (default 100 ms) with a little noise, and a run
// longer than its deadline is reported as timed out at the deadline, like the
// real agent.
inline Agent Timings(std::map<std::string, int64_t> wall_ms) {
  return [wall_ms = std::move(wall_ms)](const PlannedStep& step) {
    StepOutcome o;
    o.output_digest = "digest-ok";
    if (step.kind == StepKind::kSetup || step.kind == StepKind::kCorrectness) {
      o.wall_ns = 5 * kMs;
      return o;
    }
    auto it = wall_ms.find(step.variant);
    const int64_t ms = it == wall_ms.end() ? 100 : it->second;
    o.wall_ns = Jitter(ms * kMs, step.seq);
    o.user_ns = o.wall_ns;
    if (absl::Nanoseconds(o.wall_ns) > step.timeout) {
      o.wall_ns = absl::ToInt64Nanoseconds(step.timeout);
      o.timed_out = true;
      o.output_digest.clear();
    }
    return o;
  };
}

struct Trace {
  std::vector<PlannedStep> steps;
  ExperimentReport report;
};

// Drives the driver to the end, answering each step with `agent`. Fails the
// test (and stops) if the attempt does not finish within a generous number of
// steps.
inline Trace Drive(AttemptDriver& driver, const Agent& agent) {
  Trace run;
  for (int guard = 0; guard < 10'000; ++guard) {
    std::optional<PlannedStep> step = driver.Next();
    if (!step) break;
    StepOutcome o = agent(*step);
    o.seq = step->seq;
    run.steps.push_back(*step);
    driver.OnResult(o);
  }
  EXPECT_TRUE(driver.finished());
  EXPECT_FALSE(driver.Next().has_value());
  run.report = driver.BuildReport();
  return run;
}

inline Trace DriveSpec(ExperimentSpec spec, const Agent& agent,
                       uint64_t seed = 42) {
  AttemptDriver driver(std::move(spec), seed, /*experiment_number=*/7);
  return Drive(driver, agent);
}

inline int Count(const std::vector<PlannedStep>& steps, StepKind kind,
                 const std::string& variant = "",
                 const std::string& input = "") {
  return static_cast<int>(
      std::count_if(steps.begin(), steps.end(), [&](const PlannedStep& s) {
        return s.kind == kind && (variant.empty() || s.variant == variant) &&
               (input.empty() || s.input == input);
      }));
}

inline const CandidateReport& Candidate(const ExperimentReport& report,
                                        const std::string& variant) {
  for (const CandidateReport& c : report.candidates)
    if (c.variant == variant) return c;
  ADD_FAILURE() << "no candidate " << variant << " in the report";
  static const CandidateReport kNone;
  return kNone;
}

// (kind, variant, input) of every step, for order comparisons.
inline std::vector<std::tuple<StepKind, std::string, std::string>> Order(
    const std::vector<PlannedStep>& steps) {
  std::vector<std::tuple<StepKind, std::string, std::string>> order;
  for (const PlannedStep& s : steps)
    order.emplace_back(s.kind, s.variant, s.input);
  return order;
}

inline std::vector<std::pair<std::string, std::string>> MeasureOrder(
    const std::vector<PlannedStep>& steps) {
  std::vector<std::pair<std::string, std::string>> order;
  for (const PlannedStep& s : steps)
    if (s.kind == StepKind::kMeasure) order.emplace_back(s.variant, s.input);
  return order;
}

}  // namespace attempt_testing
}  // namespace benchfleet

#endif  // BENCHFLEET_TESTS_CONTROLLER_ATTEMPT_DRIVER_TESTING_H_
